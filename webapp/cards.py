"""HTML of answers: one card per answer (grouped), species cards, the models' page. Pure: records in, HTML out."""

from __future__ import annotations

import math
from collections.abc import Sequence

from core.answers import REASON_UNCERTAIN, REASON_UNKNOWN
from pipeline.predictor import Pipeline
from pipeline.species import look_alikes, species_card
from webapp.text import esc, rank_name, t, ui_text


def bar(p: float, accepted: bool) -> str:
    """A probability as a bar: green when it counts as an answer, orange when not."""
    colour = "#2ecc40" if accepted else "#ffa500"
    return f'<div class="tl-bar"><div style="width:{100 * p:.1f}%;background:{colour}"></div></div>'


def card_html(detection: dict, number: int | Sequence[int], lang: str, count: int = 1) -> str:
    """One answer: the taxon (``count`` organisms of it), its probability as a bar, why, and its species card.

    ``number`` is the box's number on the photo, or the numbers of all the boxes with this answer.
    """
    numbers = [number] if isinstance(number, int) else list(number)
    head = f"{count} × " if count > 1 else ""
    parts = [f'<div class="tl-card" data-testid="organism-card"><h3>{head}']
    reason = detection["reason"]
    if reason == REASON_UNKNOWN:
        parts.append(f"{esc(t(lang, 'unknown_title'))}</h3>")
        score = detection.get("unknown_score")
        parts.append(f"<p>{esc(t(lang, 'reason_unknown', score='n/a' if score is None else f'{score:.3f}'))}</p>")
    elif reason == REASON_UNCERTAIN or not detection["accepted"]:
        parts.append(f"? </h3><p>{esc(t(lang, 'not_sure', threshold=detection['threshold']))}</p><ol>")
        for g in detection["top"]:
            card = species_card(g["taxon"], lang)
            parts.append(f"<li><i>{esc(card['scientific_name'])}</i> ({esc(card['name'])}): "
                         f"{math.floor(g['probability'] * 100) / 100:.2f}{bar(g['probability'], False)}</li>")
        parts.append("</ol>")
    else:
        card = species_card(detection["taxon"], lang)
        rank = rank_name(lang, detection.get("rank") or card["rank"])
        parts.append(f"<i>{esc(card['scientific_name'])}</i>{f' ({esc(rank)})' if rank else ''} &mdash; "
                     f"{esc(card['name'])}</h3>")
        parts.append(f"{esc(t(lang, 'probability'))}: {math.floor(detection['probability'] * 1000) / 1000:.3f}"
                     f"{bar(detection['probability'], True)}")
        parts.append(f"<p>{esc(t(lang, 'reason_' + reason, rank=rank))}</p>")
        if detection["source"] == "whole_photo":
            parts.append(f"<p>{esc(t(lang, 'whole_photo'))}</p>")
        if not card["known"]:
            parts.append(f"<p>{esc(t(lang, 'no_card'))}</p>")
        else:
            if card["invasive"]:
                parts.append(f'<p><span class="tl-invasive">{esc(t(lang, "invasive"))}</span></p>')
            lineage = " &rsaquo; ".join(esc(name) for _, name in card["lineage"])
            status = ui_text()["galicia_status"][lang].get(card["galicia"], card["galicia"])
            iucn = card["iucn"] + (f" ({card['iucn_note']})" if card["iucn_note"] else "")
            rows = [("rank", esc(rank_name(lang, card["rank"]))), ("lineage", lineage),
                    ("habitat", esc(card["habitat"])), ("iucn", esc(iucn)), ("galicia", esc(status)),
                    ("action", esc(card["action"])),
                    ("sources", esc("; ".join(card["sources"])))]
            parts += [f"<p><b>{esc(t(lang, key))}:</b> {value}</p>" for key, value in rows]
    parts.append(look_alikes_html(detection, lang))
    parts.append(f'<p class="tl-boxes">{esc(t(lang, "boxes", numbers=", ".join(str(n) for n in numbers)))}</p>')
    parts.append("</div>")
    return "".join(parts)


def look_alikes_html(detection: dict, lang: str) -> str:
    """The look-alikes of a hornet answer (or of a coarse or uncertain one that may be a hornet), if any."""
    items = look_alikes(detection, lang)
    if not items:
        return ""
    rows = "".join(f"<li><b><i>{esc(i['scientific_name'])}</i> ({esc(i['name'])})</b>: {esc(i['how_to_tell'])}</li>"
                   for i in items)
    return (f'<div class="tl-look-alikes" data-testid="look-alikes"><p><b>{esc(t(lang, "look_alikes_title"))}</b>'
            f"</p><p>{esc(t(lang, 'look_alikes_check'))}</p><ul>{rows}</ul></div>")


def group_answers(detections: Sequence[dict]) -> list[tuple[dict, list[int]]]:
    """Organisms with the same answer together: ``(the most probable one, box numbers from 1)``, by size of group.

    Uncertain organisms each keep their own card: their best guesses differ.
    """
    groups: dict[tuple, list[int]] = {}
    for i, d in enumerate(detections):
        key = ("#", i) if d["reason"] == REASON_UNCERTAIN else (d["taxon"], d["reason"])
        groups.setdefault(key, []).append(i)
    ordered = sorted(groups.values(), key=lambda idx: (-len(idx), idx[0]))
    return [(max((detections[i] for i in idx), key=lambda d: d["probability"]), [i + 1 for i in idx])
            for idx in ordered]


def results_html(state: dict | None, lang: str) -> str:
    """The result panel for the last photo (or its message) in ``lang``."""
    if not state:
        return ""
    if state.get("message"):
        detail = f": {esc(state['detail'])}" if state.get("detail") else ""
        return f'<div class="tl-message" data-testid="message">{esc(t(lang, state["message"]))}{detail}</div>'
    dets = state["detections"]
    dropped = len(state.get("dropped") or [])
    note = f'<p class="tl-dropped">{esc(t(lang, "dropped", n=dropped))}</p>' if dropped else ""
    if not dets:
        return f'<div class="tl-message" data-testid="message">{esc(t(lang, "no_organism"))}</div>{note}'
    return "".join(card_html(d, numbers, lang, len(numbers)) for d, numbers in group_answers(dets)) + note


def about_html(pipe: Pipeline, lang: str) -> str:
    """What the models know, from their files."""
    out = [f"<h2>{esc(t(lang, 'models'))}</h2>"]
    for model in (pipe.detector, pipe.classifier):
        info = model.info
        thresholds = (f"score {pipe.score_threshold}" if model is pipe.detector
                      else f"probability {pipe.threshold}")
        out.append(f"<h3>{esc(info['kind'])}: {esc(info['architecture'])}</h3><ul>"
                   f"<li>{esc(t(lang, 'classes'))}: {esc(', '.join(info['class_names']))}</li>"
                   f"<li>{esc(t(lang, 'version'))}: {esc(info['model_version'])} "
                   f"(taxolens {esc(info['taxolens_version'])})</li>"
                   f"<li>{esc(t(lang, 'metrics'))}: {esc(info.get('metrics'))}</li>"
                   f"<li>{esc(t(lang, 'thresholds'))}: {esc(thresholds)}</li></ul>")
    return "".join(out)
