"""The interface's words by language, from the packaged ``configs/ui.yaml``."""

from __future__ import annotations

import html
from functools import lru_cache

from core.config import packaged, read_yaml

LANGUAGES = {"English": "en", "Español": "es", "Galego": "gl"}


@lru_cache(maxsize=1)
def ui_text() -> dict:
    """Interface texts by language."""
    return read_yaml(packaged("ui.yaml"))


def lang_code(language: str) -> str:
    """``English`` -> ``en`` (English for anything unknown)."""
    return LANGUAGES.get(language, "en")


def t(lang: str, key: str, **kw: object) -> str:
    """One interface text in ``lang`` (English where that language lacks it)."""
    text = ui_text().get(lang, ui_text()["en"]).get(key, ui_text()["en"][key])
    return text.format(**kw) if kw else text


def esc(x: object) -> str:
    """HTML-escaped text."""
    return html.escape(str(x))


def rank_name(lang: str, rank: str | None) -> str:
    """A taxonomic rank in ``lang`` (``genus`` -> ``xénero``)."""
    return ui_text()[lang if lang in ui_text() else "en"]["ranks"].get(rank, rank) if rank else ""
