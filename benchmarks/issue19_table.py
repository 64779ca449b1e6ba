"""The issue-19 figures of each evaluated model (report.json of each held-out set)."""
import json
import sys
from pathlib import Path

ABOVE_VESPA = {"Vespidae", "Hymenoptera", "Insecta", "Arthropoda", "Animalia"}


def figures(ev: Path, clf: Path) -> dict:
    """The figures issue 19 asks for, from one evaluation folder and its classifier file."""
    def rep(name):
        p = ev / name / "report.json"
        return json.loads(p.read_text()) if p.is_file() else None

    def folder(r, name):
        return next(f for f in r["folders"] if f["folder"] == name)

    out = {}
    hf = rep("hornet-frames")
    if hf:
        v, c = folder(hf, "Vespa_velutina"), folder(hf, "Vespa_crabro")
        out["hf_velutina"] = f"{v['answers'].get('Vespa velutina', 0)}/{v['organisms']} named, " \
                             f"{sum(v['answers'].get(t, 0) for t in ABOVE_VESPA)} above Vespa"
        out["hf_crabro_as_velutina"] = c["answers"].get("Vespa velutina", 0)
    h3 = rep("hornets-3class-test")
    if h3:
        out["h3_crabro_as_velutina"] = folder(h3, "Vespa_crabro")["answers"].get("Vespa velutina", 0)
    gh = rep("giant-hornet-val")
    if gh:
        g = folder(gh, "Vespa_mandarinia")
        out["giant_as_velutina"] = f"{g['answers'].get('Vespa velutina', 0)}/{g['organisms']}"
        out["giant_coarse_right"] = g["right_but_coarse"]
    bb = rep("bumblebee")
    if bb:
        out["bumblebee_named_wrongly"] = folder(bb, "Bombus")["named_wrongly"]
    hy = rep("hymenoptera-val")
    if hy:
        n = sum(f["organisms"] for f in hy["folders"])
        ans = sum((f["answered"] or 0) * f["organisms"] for f in hy["folders"])
        right = sum((f["answers_right"] or 0) * (f["answered"] or 0) * f["organisms"] for f in hy["folders"])
        fine = sum(f["answers"].get(t, 0) for f in hy["folders"] for t in ("Apis mellifera", "Formicidae"))
        out["hym_answered"], out["hym_species_or_family"] = ans / n, fine / n
        out["hym_right"] = right / ans if ans else None
    bh = rep("bees-hornets-valid")
    if bh:
        o = bh["overall"]
        out["bh_answered"], out["bh_right"] = o["answered"], o["answers_right"]
    right = wrong = 0
    for r in filter(None, (rep(n) for n in ("hornet-frames", "hornets-3class-test", "giant-hornet-val", "bumblebee",
                                             "hymenoptera-val", "bees-hornets-valid"))):
        for f in r["folders"]:
            k = f["answers"].get("Vespa velutina", 0)
            if f["folder_taxon"] in ("Vespa velutina", "Vespa"):
                right += k
            else:
                wrong += k
    out["velutina_answers_right"] = f"{right}/{right + wrong}"
    # per set, the share of organisms answered at species level (the issue asks for it beside every figure)
    for name in ("hornet-frames", "hornets-3class-test", "giant-hornet-val", "bumblebee", "hymenoptera-val",
                 "bees-hornets-valid"):
        r = rep(name)
        if r:
            n = sum(f["organisms"] for f in r["folders"])
            at = sum((f.get("at_species") or 0) * f["organisms"] for f in r["folders"])
            out[f"at_species:{name}"] = at / n if n else None
    if clf.is_file():
        import torch
        out["val_accuracy"] = torch.load(clf, weights_only=True)["metrics"]["val_accuracy"]
    return out


if __name__ == "__main__":
    for ev, clf in zip(sys.argv[1::2], sys.argv[2::2]):
        print(ev, json.dumps(figures(Path(ev), Path(clf)), default=lambda x: round(x, 3)))
