"""Out of the store: reviewed detections for training (COCO + crops), Darwin Core for GBIF, Camtrap DP.

Every export reads the answer in force for each detection (:func:`answer`): the latest expert review where
there is one, else the model's own answer.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from core.answers import ANSWERED, NO_ORGANISM, REASON_NO_ORGANISM, REASON_UNKNOWN
from core.crops import crop_box
from core.defaults import CROP_PADDING
from core.io import ImageReadError, atomic_save_image, atomic_write, atomic_write_json, csv_text, read_image
from core.taxonomy import lineage_of
from review.store import detection_rows, now, photo_rows, stored_path, where

NAMED_REASONS = ANSWERED
DWC = "http://rs.tdwg.org/dwc/terms/"
DWC_TERMS = ("occurrenceID", "basisOfRecord", "scientificName", "taxonRank", "kingdom", "eventDate",
             "decimalLatitude", "decimalLongitude", "geodeticDatum", "identifiedBy", "dateIdentified",
             "identificationVerificationStatus", "associatedMedia", "identificationRemarks")
CAMTRAP_PROFILE = "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2/camtrap-dp-profile.json"
CAMTRAP_SCHEMA = "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2/{}-table-schema.json"


def answer(row: dict) -> dict:
    """The answer in force for a detection row of :func:`review.store.detection_rows`.

    ``taxon`` (``None`` when there is no organism or no answer), ``box`` ``[x, y, w, h]``, ``by`` (``expert``
    or ``model``), ``reviewer`` and ``at`` (the review's or the prediction's time), ``organism`` (whether the
    box holds one).
    """
    box = [row["x"], row["y"], row["w"], row["h"]]
    action = row.get("review_action")
    if action is not None:
        if action == "redraw":
            box = [row["review_x"], row["review_y"], row["review_w"], row["review_h"]]
        return {"taxon": row["review_taxon"], "box": box, "by": "expert", "reviewer": row["review_reviewer"],
                "at": row["review_at"], "organism": action != REASON_NO_ORGANISM}
    named = row["reason"] in NAMED_REASONS and not row["dropped"]
    return {"taxon": row["taxon"] if named else None, "box": box, "by": "model", "reviewer": None,
            "at": row["predicted_at"], "organism": not row["dropped"]}


def _rank_and_kingdom(taxon: str, rank: str | None) -> tuple[str, str]:
    lineage = dict(lineage_of(taxon))
    return (rank or (list(lineage)[-1] if lineage else "")), lineage.get("kingdom", "")


# ---- COCO + crops for training -------------------------------------------------------------------------

def export_coco(engine: Any, out: str | os.PathLike, padding: float = CROP_PADDING) -> dict:
    """Reviewed detections as a COCO file and crops by taxon, ready for training.

    ``OUT/reviewed.json`` (COCO, for ``detector train``) and crops in ``OUT/crops/<taxon>/`` (for ``classifier
    train``); boxes an expert marked "no organism" go to ``OUT/crops/no organism/`` (the background class) and
    not into the COCO file.
    """
    out = Path(out)
    rows = [r for r in detection_rows(engine) if r.get("review_action") is not None]
    images: dict[int, dict] = {}
    annotations: list[dict] = []
    categories: dict[str, int] = {}
    crops: Counter[str] = Counter()
    for row in rows:
        a = answer(row)
        if row["photo_id"] not in images:
            images[row["photo_id"]] = {"id": row["photo_id"], "file_name": os.path.relpath(stored_path(row), out),
                                       "width": row["photo_width"], "height": row["photo_height"]}
        folder = a["taxon"] if a["organism"] else NO_ORGANISM
        try:
            photo = read_image(stored_path(row))
        except ImageReadError:
            continue
        atomic_save_image(crop_box(photo, a["box"], padding), out / "crops" / folder / f"{row['sha256'][:16]}_"
                          f"{row['id']}.png")
        crops[folder] += 1
        if a["organism"]:
            cid = categories.setdefault(a["taxon"], len(categories) + 1)
            x, y, w, h = a["box"]
            annotations.append({"id": len(annotations) + 1, "image_id": row["photo_id"], "category_id": cid,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0,
                                "reviewer": a["reviewer"], "reviewed_at": a["at"]})
    coco = {"info": {"description": "taxolens expert-reviewed detections", "date_created": now()},
            "images": list(images.values()), "annotations": annotations,
            "categories": [{"id": i, "name": n, "supercategory": "organism"} for n, i in categories.items()]}
    atomic_write_json(out / "reviewed.json", coco, indent=None)
    manifest = {"source": "taxolens review export-coco", "padding": padding, "crops_per_class": dict(crops),
                "failures": []}
    atomic_write_json(out / "crops" / "crops.json", manifest)
    return {"images": len(images), "boxes": len(annotations), "crops": dict(crops)}


# ---- Darwin Core Archive --------------------------------------------------------------------------------

def occurrences(engine: Any) -> list[dict]:
    """One Darwin Core occurrence per detection with a taxon in force (named by the model or an expert).

    Each photo's newest answer (a rerun with other settings replaces the earlier one here; both stay stored).
    """
    rows = []
    for row in detection_rows(engine, include_dropped=True, newest_only=True):
        a = answer(row)
        if not a["organism"] or not a["taxon"]:
            continue
        rank, kingdom = _rank_and_kingdom(a["taxon"], row["rank"] if a["by"] == "model" else None)
        expert = a["by"] == "expert"
        has_gps = row["latitude"] is not None and row["longitude"] is not None
        rows.append({
            "occurrenceID": f"taxolens:{row['sha256']}:{row['model_version']}:{row['settings_id']}:{row['idx']}",
            "basisOfRecord": "HumanObservation" if expert else "MachineObservation",
            "scientificName": a["taxon"], "taxonRank": rank, "kingdom": kingdom,
            "eventDate": row["taken_at"] or "", "decimalLatitude": row["latitude"] if has_gps else "",
            "decimalLongitude": row["longitude"] if has_gps else "", "geodeticDatum": "EPSG:4326" if has_gps else "",
            "identifiedBy": a["reviewer"] if expert else f"taxolens {row['model_version']}",
            "dateIdentified": a["at"],
            "identificationVerificationStatus": "verified by expert" if expert else "unverified (machine)",
            "associatedMedia": Path(row["path"]).name,
            "identificationRemarks": f"model answer {row['taxon']} ({row['reason']}, probability "
                                     f"{row['probability']})"})
    return rows


def _meta_xml(terms: tuple[str, ...]) -> str:
    fields = "\n".join(f'    <field index="{i}" term="{DWC}{t}"/>' for i, t in enumerate(terms))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<archive xmlns="http://rs.tdwg.org/dwc/text/" metadata="eml.xml">\n'
            '  <core encoding="UTF-8" fieldsTerminatedBy="\\t" linesTerminatedBy="\\n" fieldsEnclosedBy="" '
            f'ignoreHeaderLines="1" rowType="{DWC}Occurrence">\n'
            '    <files><location>occurrence.txt</location></files>\n'
            '    <id index="0"/>\n'
            f"{fields}\n  </core>\n</archive>\n")


def _eml_xml(title: str, count: int) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<eml:eml xmlns:eml="https://eml.ecoinformatics.org/eml-2.2.0" packageId="taxolens-export" '
            'system="taxolens" scope="system">\n'
            f"  <dataset><title>{escape(title)}</title><creator><organizationName>taxolens</organizationName>"
            "</creator>\n"
            f"  <abstract><para>{count} occurrences of organisms identified in photos by taxolens (a detector and a "
            "classifier), each marked as verified by an expert or not.</para></abstract>\n"
            "  <intellectualRights><para>Set the licence of your photos here before publishing.</para>"
            "</intellectualRights></dataset>\n</eml:eml>\n")


def export_dwc(engine: Any, out: str | os.PathLike, title: str = "taxolens occurrences") -> dict:
    """A Darwin Core Archive (``occurrence.txt`` + ``meta.xml`` + ``eml.xml``, zipped) at ``out``."""
    rows = occurrences(engine)
    text = csv_text(DWC_TERMS, [[str(r[t]).replace("\t", " ").replace("\n", " ") for t in DWC_TERMS] for r in rows],
                    delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE, escapechar="\\")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("occurrence.txt", text)
        z.writestr("meta.xml", _meta_xml(DWC_TERMS))
        z.writestr("eml.xml", _eml_xml(title, len(rows)))
    atomic_write(out, lambda fh: fh.write(buffer.getvalue()), "wb")
    by = Counter(r["basisOfRecord"] for r in rows)
    return {"occurrences": len(rows), **dict(by)}


# ---- Camtrap DP -----------------------------------------------------------------------------------------

def _table(path: Path, header: list[str], rows: list[dict]) -> None:
    text = csv_text(header, rows, lineterminator="\n")
    atomic_write(path, lambda fh: fh.write(text), "w")


#: every field of each Camtrap DP 1.0.2 table, in the standard's order (a test checks them against the published
#: table schemas in ../shared/standards); a field taxolens does not know is written empty
DEPLOYMENT_FIELDS = ["deploymentID", "locationID", "locationName", "latitude", "longitude", "coordinateUncertainty",
    "deploymentStart", "deploymentEnd", "setupBy", "cameraID", "cameraModel", "cameraDelay", "cameraHeight",
    "cameraDepth", "cameraTilt", "cameraHeading", "detectionDistance", "timestampIssues", "baitUse", "featureType",
    "habitat", "deploymentGroups", "deploymentTags", "deploymentComments"]
MEDIA_FIELDS = ["mediaID", "deploymentID", "captureMethod", "timestamp", "filePath", "filePublic", "fileName",
    "fileMediatype", "exifData", "favorite", "mediaComments"]
OBSERVATION_FIELDS = ["observationID", "deploymentID", "mediaID", "eventID", "eventStart", "eventEnd",
    "observationLevel", "observationType", "cameraSetupType", "scientificName", "count", "lifeStage", "sex",
    "behavior", "individualID", "individualPositionRadius", "individualPositionAngle", "individualSpeed", "bboxX",
    "bboxY", "bboxWidth", "bboxHeight", "classificationMethod", "classifiedBy", "classificationTimestamp",
    "classificationProbability", "observationTags", "observationComments"]
#: where the standard's published files are looked for when none is named (the project's ../shared beside it)
CAMTRAP_STANDARD = Path(__file__).resolve().parents[1].parent / "shared" / "standards" / "camtrap-dp-1.0.2"


def export_camtrapdp(engine: Any, out: str | os.PathLike, *, latitude: float | None = None,
                     longitude: float | None = None, title: str = "taxolens observations") -> dict:
    """A Camtrap DP 1.0.2 package in ``out``.

    ``datapackage.json``, ``deployments.csv``, ``media.csv`` and ``observations.csv``.

    One deployment per photo folder; its position is the mean EXIF GPS of its photos, else ``latitude`` and
    ``longitude`` (where the operator knows the camera stood). Media timestamps are EXIF capture times, else
    when the photo entered the store (said in ``mediaComments``). Each detection is an observation:
    ``animal`` with its taxon, ``unknown`` (the model said unknown), ``unclassified`` (uncertain, not yet
    reviewed); a photo with no organism is one ``blank`` observation.

    Raises:
        ValueError: a deployment without a position (no GPS in its photos and none given).
    """
    out = Path(out)
    photos: dict[int, dict] = {}
    for p in photo_rows(engine):
        photos.setdefault(p["id"], p)
    if not photos:
        raise ValueError(f"{where(engine)}: the store holds no photo yet, so there is nothing to export (taxolens run "
                         "--store, or the app's 'keep for review' box, fills it)")
    deployments, deployment_of = _deployments(photos, latitude, longitude)
    media = [{"mediaID": f"m{p['id']}", "deploymentID": deployment_of[p["id"]], "captureMethod": "activityDetection",
              "timestamp": _timestamp(p), "filePath": Path(stored_path(p)).as_uri(), "filePublic": "false",
              "fileName": Path(p["path"]).name, "fileMediatype": _mediatype(p["path"]),
              "mediaComments": "" if p["taken_at"] else "no EXIF time: the time the photo entered the store"}
             for p in photos.values()]
    observations = _observations(engine, photos, deployment_of)
    out.mkdir(parents=True, exist_ok=True)
    _table(out / "deployments.csv", DEPLOYMENT_FIELDS, deployments)
    _table(out / "media.csv", MEDIA_FIELDS, media)
    _table(out / "observations.csv", OBSERVATION_FIELDS, observations)
    atomic_write_json(out / "datapackage.json", _package(title, deployments, observations))
    return {"deployments": len(deployments), "media": len(media), "observations": len(observations),
            "types": dict(Counter(o["observationType"] for o in observations))}


def _deployments(photos: dict[int, dict], latitude: float | None, longitude: float | None
                 ) -> tuple[list[dict], dict[int, str]]:
    """One deployment per photo folder, placed by its photos' mean GPS (else the operator's position)."""
    folders: dict[str, list[dict]] = {}
    for p in photos.values():
        folders.setdefault(str(Path(p["path"]).parent), []).append(p)
    deployments: list[dict] = []
    deployment_of: dict[int, str] = {}
    for i, (folder, members) in enumerate(sorted(folders.items()), start=1):
        gps = [(m["latitude"], m["longitude"]) for m in members if m["latitude"] is not None]
        lat = sum(g[0] for g in gps) / len(gps) if gps else latitude
        lon = sum(g[1] for g in gps) / len(gps) if gps else longitude
        if lat is None or lon is None:
            raise ValueError(f"{folder}: its photos have no GPS position; give the deployment's --latitude and "
                             "--longitude")
        times = sorted(_timestamp(m) for m in members)
        dep = f"dep{i}"
        deployments.append({"deploymentID": dep, "locationName": Path(folder).name, "latitude": round(lat, 6),
                            "longitude": round(lon, 6), "deploymentStart": times[0], "deploymentEnd": times[-1],
                            "deploymentComments": f"photos of {folder}"})
        for m in members:
            deployment_of[m["id"]] = dep
    return deployments, deployment_of


def _observations(engine: Any, photos: dict[int, dict], deployment_of: dict[int, str]) -> list[dict]:
    """Each organism of each photo's newest answer (or its expert's) as an observation; a photo with none, blank."""
    observations = []
    seen_photos = set()
    for row in detection_rows(engine, include_dropped=False, newest_only=True):
        a = answer(row)
        seen_photos.add(row["photo_id"])
        if not a["organism"]:
            continue
        kind = "animal" if a["taxon"] else "unknown" if row["reason"] == REASON_UNKNOWN else "unclassified"
        x, y, w, h = a["box"]
        W, H = row["photo_width"] or 1, row["photo_height"] or 1
        observations.append({
            "observationID": f"o{row['id']}", "deploymentID": deployment_of[row["photo_id"]],
            "mediaID": f"m{row['photo_id']}", "eventStart": _timestamp(photos[row["photo_id"]]),
            "eventEnd": _timestamp(photos[row["photo_id"]]), "observationLevel": "media", "observationType": kind,
            "scientificName": a["taxon"] or "", "count": 1,
            "classificationMethod": "human" if a["by"] == "expert" else "machine",
            "classifiedBy": a["reviewer"] if a["by"] == "expert" else f"taxolens {row['model_version']}",
            "classificationTimestamp": _iso(a["at"]),
            "classificationProbability": "" if a["by"] == "expert" or row["probability"] is None
            else round(float(row["probability"]), 4),
            "bboxX": round(min(max(x / W, 0.0), 1.0), 4), "bboxY": round(min(max(y / H, 0.0), 1.0), 4),
            "bboxWidth": round(min(max(w / W, 1e-4), 1.0), 4), "bboxHeight": round(min(max(h / H, 1e-4), 1.0), 4),
            "observationComments": f"model: {row['taxon']} ({row['reason']})"})
    for p in photos.values():
        if p["id"] not in seen_photos:
            observations.append({"observationID": f"b{p['id']}", "deploymentID": deployment_of[p["id"]],
                                 "mediaID": f"m{p['id']}", "eventStart": _timestamp(p), "eventEnd": _timestamp(p),
                                 "observationLevel": "media", "observationType": "blank",
                                 "classificationMethod": "machine", "classifiedBy": "taxolens",
                                 "classificationTimestamp": _iso(p["predicted_at"])})
    return observations


def _package(title: str, deployments: list[dict], observations: list[dict]) -> dict:
    """``datapackage.json``: the project, its extent in space, time and taxa, and the three tables."""
    taxa = sorted({o["scientificName"] for o in observations if o.get("scientificName")})
    starts = [str(d["deploymentStart"]) for d in deployments]
    ends = [str(d["deploymentEnd"]) for d in deployments]
    lats = [float(d["latitude"]) for d in deployments]
    lons = [float(d["longitude"]) for d in deployments]
    return {
        "profile": CAMTRAP_PROFILE, "name": "taxolens-observations", "title": title, "created": _iso(now()),
        "contributors": [{"title": "taxolens", "role": "contributor"}],
        "project": {"title": title, "samplingDesign": "opportunistic", "captureMethod": ["activityDetection"],
                    "individualAnimals": False, "observationLevel": ["media"]},
        "spatial": {"type": "Polygon", "coordinates": [[[min(lons), min(lats)], [max(lons), min(lats)],
                                                        [max(lons), max(lats)], [min(lons), max(lats)],
                                                        [min(lons), min(lats)]]]},
        "temporal": {"start": min(starts)[:10], "end": max(ends)[:10]},
        "taxonomic": [_taxon(t) for t in taxa],
        "resources": [{"name": name, "path": f"{name}.csv", "profile": "tabular-data-resource", "format": "csv",
                       "mediatype": "text/csv", "encoding": "utf-8", "schema": CAMTRAP_SCHEMA.format(name)}
                      for name in ("deployments", "media", "observations")],
    }


def _taxon(name: str) -> dict:
    """A ``taxonomic`` entry: the name, and its rank where species.yaml knows it (the key left out otherwise)."""
    rank = _rank_and_kingdom(name, None)[0]
    return {"scientificName": name, **({"taxonRank": rank} if rank else {})}


def _iso(stamp: str | None) -> str:
    """A timestamp with a zone, as Camtrap DP needs (store times are UTC; EXIF times are taken as UTC)."""
    if not stamp:
        return ""
    return stamp if stamp.endswith("Z") or "+" in stamp[10:] else stamp + "Z"


def _timestamp(photo: dict) -> str:
    return _iso(photo["taken_at"] or photo["added_at"])


def _mediatype(path: str) -> str:
    ext = Path(path).suffix.lower()
    return {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".tif": "image/tiff",
            ".tiff": "image/tiff", ".webp": "image/webp", ".bmp": "image/bmp"}.get(ext, "image/jpeg")


def validate_camtrapdp(folder: str | os.PathLike, standard: str | os.PathLike | None = None) -> list[str]:
    """Validate an exported package offline against the standard's own published files; returns the errors.

    ``standard`` is a folder holding Camtrap DP 1.0.2's ``camtrap-dp-profile.json`` and its three
    ``*-table-schema.json`` (default: ``TAXOLENS_CAMTRAP_STANDARD``, else ``../shared/standards/camtrap-dp-1.0.2``).
    The tables are checked with ``frictionless`` against those table schemas (types, required fields, enums,
    ranges, keys between tables), and ``datapackage.json`` with ``jsonschema`` against the profile; the profile
    refers to two schemas on the web (the generic Data Package and GeoJSON), which are taken as met offline.
    Each error names its table, row and field.

    Raises:
        FileNotFoundError: the standard's files are not there.
    """
    import frictionless

    folder = Path(folder)
    std = Path(standard or os.environ.get("TAXOLENS_CAMTRAP_STANDARD") or CAMTRAP_STANDARD)
    files = {name: std / f"{name}-table-schema.json" for name in ("deployments", "media", "observations")}
    profile_file = std / "camtrap-dp-profile.json"
    missing = [str(p) for p in [*files.values(), profile_file] if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{std}: the Camtrap DP 1.0.2 files are not there ({missing[0]} missing)")
    descriptor = json.loads((folder / "datapackage.json").read_text(encoding="utf-8"))
    errors = _profile_errors(descriptor, json.loads(profile_file.read_text(encoding="utf-8")))
    resources = [{**r, "schema": json.loads(files[r["name"]].read_text(encoding="utf-8"))}
                 for r in descriptor["resources"] if r.get("name") in files]
    package = frictionless.Package({"name": descriptor["name"], "resources": resources}, basepath=str(folder))
    report = package.validate()
    return errors + [f"{task.name}: {e.message}" for task in report.tasks for e in task.errors] + [
        e.message for e in report.errors]


def _profile_errors(descriptor: dict, profile: dict) -> list[str]:
    """``datapackage.json`` against the Camtrap DP profile, its references to the web taken as met (offline)."""
    import jsonschema
    from referencing import Registry, Resource

    offline = [Resource.from_contents({"$schema": "http://json-schema.org/draft-04/schema#"})]
    registry = Registry().with_resources((uri, offline[0]) for uri in (
        "https://specs.frictionlessdata.io/schemas/data-package.json", "http://json.schemastore.org/geojson.json"))
    validator = jsonschema.Draft4Validator(profile, registry=registry)
    return [f"datapackage.json: {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in validator.iter_errors(descriptor)]
