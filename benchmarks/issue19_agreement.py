"""Issue 19, item 5: what an ensemble would name if a name needed every member's agreement (offline, from records).

Usage: ``benchmarks/issue19_agreement.py SEEDS...`` after ``benchmarks/issue19_ensemble.py``: for each seed, the
records of the ensemble (runs/r19/ens-seedS) and of its two members (base-seedS, b-seedS) on every held-out set,
matched organism by organism (the same detector, so the same boxes). A name (a class: a species, or Formicidae) of
the blend is kept when both members agree on it, by one of three rules: ``named`` (each member named that class
too: the rule ``classifier ensemble`` builds), ``top`` (it is each member's most probable class, at any
probability), ``bar:P`` (each member gives it at least P, read from its top three). Prints, per seed, the names the
issue counts, for the blend alone and under each rule.
"""
import json
import sys
from pathlib import Path

ROOT = Path("runs/r19")
SETS = ("hornet-frames", "hornets-3class-test", "giant-hornet-val", "bumblebee", "hymenoptera-val",
        "bees-hornets-valid")


def answers(model: str, seed: int, name: str) -> dict:
    """(set folder, file, box) -> (taxon, reason, top three) for every organism a model's evaluation recorded."""
    out = {}
    for r in json.loads((ROOT / f"{model}-seed{seed}" / "evaluation" / name / "records.json").read_text()):
        for d in r.get("detections") or []:
            top = {t["taxon"]: t["probability"] for t in d.get("top") or []}
            out[(r.get("folder"), r["file"], tuple(round(v) for v in d["box"]))] = (d["taxon"], d["reason"], top)
    return out


def agrees(member: tuple | None, taxon: str, rule: str) -> bool:
    """Whether one member's answer for an organism agrees with the blend's name ``taxon`` under ``rule``."""
    if member is None:
        return False
    named, _, top = member
    if rule == "named":
        return named == taxon
    if rule == "top":
        return bool(top) and max(top, key=top.get) == taxon
    return top.get(taxon, 0.0) >= float(rule.split(":", 1)[1])


def counts(seed: int, rule: str | None) -> dict:
    """The figures of one seed's ensemble, with no agreement rule (None) or with ``rule``."""
    named: dict[tuple[str, str, str], int] = {}
    organisms: dict[tuple[str, str], int] = {}
    for name in SETS:
        ens, a, b = (answers(m, seed, name) for m in ("ens", "base", "b"))
        for key, (taxon, reason, _) in ens.items():
            organisms[(name, key[0])] = organisms.get((name, key[0]), 0) + 1
            if reason != "named":
                continue
            if rule and not (agrees(a.get(key), taxon, rule) and agrees(b.get(key), taxon, rule)):
                continue
            named[(name, key[0], taxon)] = named.get((name, key[0], taxon), 0) + 1

    def n(name, folder, taxon):
        return named.get((name, folder, taxon), 0)

    velutina_right = sum(k for (s, f, t), k in named.items()
                         if t == "Vespa velutina" and f in ("Vespa_velutina", "Vespa"))
    velutina_all = sum(k for (s, f, t), k in named.items() if t == "Vespa velutina")
    bumble = sum(k for (s, f, t), k in named.items() if s == "bumblebee")
    bh_named = sum(k for (s, f, t), k in named.items() if s == "bees-hornets-valid")
    bh_n = sum(v for (s, f), v in organisms.items() if s == "bees-hornets-valid")
    return {"hf velutina named": f"{n('hornet-frames', 'Vespa_velutina', 'Vespa velutina')}/"
                                 f"{organisms.get(('hornet-frames', 'Vespa_velutina'), 0)}",
            "crabro named velutina": n("hornet-frames", "Vespa_crabro", "Vespa velutina")
            + n("hornets-3class-test", "Vespa_crabro", "Vespa velutina"),
            "giant named velutina": n("giant-hornet-val", "Vespa_mandarinia", "Vespa velutina"),
            "bumblebee named (wrongly)": f"{bumble}/{organisms.get(('bumblebee', 'Bombus'), 0)}",
            "velutina answers right": f"{velutina_right}/{velutina_all}",
            "bees-hornets named": f"{bh_named}/{bh_n}"}


if __name__ == "__main__":
    for seed in map(int, sys.argv[1:]):
        for rule in (None, "named", "top", "bar:0.8", "bar:0.5"):
            print(seed, f"{rule or 'blend alone':12}", json.dumps(counts(seed, rule)))
