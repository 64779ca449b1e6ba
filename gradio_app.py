"""The taxolens web app's entry point: ``python gradio_app.py --detector D --classifier C`` (or ``taxolens app``).

The app itself is the ``webapp`` package (layout, the identify and batch pages, the review page, cards).
"""

from __future__ import annotations

from webapp.cards import card_html, group_answers, results_html
from webapp.layout import TaxolensApp
from webapp.main import get_args_parser, main

__all__ = ["TaxolensApp", "card_html", "get_args_parser", "group_answers", "main", "results_html"]

if __name__ == "__main__":
    raise SystemExit(main())
