"""``taxolens app``: the web app's command line (``gradio_app.py`` is its short entry point).

Launch::

    taxolens app --detector runs/demo/detector/model.pt --classifier runs/demo/classifier/model.pt
    python gradio_app.py --detector ... --classifier ...

The inference settings come from ``configs/inference.yaml`` and then ``configs/app.yaml`` (the app's own
defaults, such as how low the detector-score slider goes); the command line wins over both.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from core.config import add_config_arg, parse_with_config
from pipeline.predictor import Pipeline
from pipeline.settings import InferenceSettings
from webapp.auth import SignIn
from webapp.layout import CSS, REVIEW_KEYS, TaxolensApp


def get_args_parser() -> argparse.ArgumentParser:
    """Options of ``taxolens app``."""
    p = argparse.ArgumentParser(prog="taxolens app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--detector", required=True)
    p.add_argument("--classifier", required=True)
    p.add_argument("--examples", nargs="*", default=[], help="example photos shown under the upload")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--concurrency", type=int, default=2, help="photos processed at once; the rest wait in the queue")
    p.add_argument("--max-file-size", default="25mb")
    p.add_argument("--store-url", default=None,
                   help="keep photos and answers for expert review in this store (a file path for SQLite, or an "
                        "SQLAlchemy URL); adds the 'keep for review' box and the Review tab")
    p.add_argument("--store-photos", default=None,
                   help="folder for the copies of kept photos (default: beside an SQLite store, else "
                        "runs/taxolens-store-photos)")
    add_config_arg(p, "app")
    InferenceSettings.add_args(p)
    p.add_argument("--password-env", default="TAXOLENS_APP_PASSWORD",
                   help="environment variable holding the password the operator sets; when it is set, every "
                        "user signs in (any name, that password) and reviews are signed with that name")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``taxolens app``."""
    args = parse_with_config(get_args_parser(), argv, default="app")
    password = os.environ.get(args.password_env) or None
    if args.store_url and args.host not in ("127.0.0.1", "localhost", "::1") and not password:
        raise ValueError(f"--host {args.host} with a review store: reviewing on a shared machine needs a password "
                         f"(set {args.password_env})")
    pipe = Pipeline.from_files(args.detector, args.classifier, InferenceSettings.from_args(args))
    photos = args.store_photos or (Path(args.store_url).with_suffix("").as_posix() + "-photos"
                                   if args.store_url and "://" not in args.store_url else "runs/taxolens-store-photos")
    app = TaxolensApp(pipe, args.examples, store_url=args.store_url, photo_dir=photos, signed_in=password is not None)
    demo = app.build()
    demo.queue(default_concurrency_limit=args.concurrency, max_size=256)
    demo.launch(server_name=args.host, server_port=args.port, css=CSS, max_file_size=args.max_file_size,
                allowed_paths=[str(Path(e).resolve().parent) for e in args.examples], footer_links=["api"],
                head=REVIEW_KEYS if args.store_url else None,
                auth=SignIn(password) if password else None,
                auth_message="taxolens: sign in with your name and the password the operator gave you")
    app.identify_page.close()
    return 0
