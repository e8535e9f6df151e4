"""Labelled datasets in the catalog: import, export, split, class maps.

An imported image is an `image` version; its annotations an `annotation` version derived from it
(label at least the image's); the dataset a `dataset` version derived from every annotation, whose
content is a manifest listing the (image, annotation) pairs and the class names. Its label is the
least upper bound of its members' (the catalog enforces it through the lineage).

Import validates every file first and stores nothing when anything failed. Storing then runs in
three transactions (images, annotations, dataset); a crash in between leaves complete versions
that a re-run finds and skips, never a row without its blob.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from casemate.catalog.service import NewVersion, Version
from casemate.errors import CasemateError, UsageError
from casemate.factory.formats import (
    FORMATS,
    Problem,
    coco_document,
    dota_lines,
    read_folder,
    yolo_lines,
)
from casemate.fileutil import write_atomic
from casemate.security.labels import Label, format_label, lub, parse_label
from casemate.security.policy import User
from casemate.store import db

if TYPE_CHECKING:
    from casemate.workspace import Workspace

MANIFEST_FORMAT = "casemate-dataset/1"
BATCH = 2000


class ImportFailed(CasemateError):
    """Some input was bad: nothing was stored; `problems` names every file and line."""

    exit_code = 1

    def __init__(self, problems: list[Problem]) -> None:
        head = f"{len(problems)} problem(s) in the input, nothing stored"
        super().__init__(head + ":\n  " + "\n  ".join(str(p) for p in problems[:50])
                         + (f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""))
        self.problems = problems


@dataclass
class ImportReport:
    dataset: Version
    images_new: int = 0
    annotations_new: int = 0
    unchanged: bool = False
    classes: list[str] = field(default_factory=list)
    objects: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset.id, "name": self.dataset.name, "label": format_label(self.dataset.label),
                "images": self.dataset.metadata.get("counts", {}).get("images"), "images_new": self.images_new,
                "annotations_new": self.annotations_new, "objects": self.objects, "classes": self.classes,
                "unchanged": self.unchanged}


def canonical_bytes(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _pks(ws: Workspace, public_ids: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    with ws.engine.connect() as conn:
        for i in range(0, len(public_ids), 500):
            chunk = public_ids[i : i + 500]
            out.update(conn.execute(select(db.versions.c.public_id, db.versions.c.id)
                                    .where(db.versions.c.public_id.in_(chunk))).all())
    return out


def _existing(ws: Workspace, user: User, keys: list[str]) -> dict[str, tuple[int, str, int, str]]:
    """For each source key: (asset pk, sha256, label id, version public id) of its newest readable version."""
    found = ws.catalog.find_by_source(user, keys)
    out: dict[str, tuple[int, str, int, str]] = {}
    if not found:
        return out
    want = {(apk, sha, lid): key for key, (apk, sha, lid) in found.items()}
    apks = sorted({v[0] for v in found.values()})
    with ws.engine.connect() as conn:
        for i in range(0, len(apks), 500):
            rows = conn.execute(
                select(db.versions.c.asset_id, db.versions.c.sha256, db.versions.c.label_id, db.versions.c.public_id)
                .where(db.versions.c.asset_id.in_(apks[i : i + 500])).order_by(db.versions.c.id)
            ).all()
            for apk, sha, lid, pub in rows:
                key = want.get((apk, sha, lid))
                if key is not None:
                    out[key] = (apk, sha, lid, pub)  # later rows are newer
    return out


def import_dataset(ws: Workspace, user: User, root: str | Path, *, fmt: str, label: str | Label,
                   name: str | None = None, classes: list[str] | None = None, gsd: float | None = None,
                   io_threads: int = 4) -> ImportReport:
    """Import a labelled folder; see the module docstring. Raises ImportFailed (nothing stored)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    lab = parse_label(label) if isinstance(label, str) else label
    ws.catalog.check_label(user, lab)  # above the user's clearance: refused before any work
    root = Path(root)
    res = read_folder(root, fmt, classes=classes)
    if not res.problems and not res.images:
        res.problems.append(Problem(str(root), None, "no labelled images found"))
    if res.problems:
        raise ImportFailed(res.problems)
    if gsd is not None:
        for li in res.images:
            li.gsd = li.gsd if li.gsd is not None else gsd
    cat = ws.catalog
    # 1. images: hash and stage (a few threads: small-file I/O is latency-bound)
    from concurrent.futures import ThreadPoolExecutor

    image_keys = [os.path.realpath(li.image_path) for li in res.images]
    with ThreadPoolExecutor(io_threads) as pool:
        existing_img = _existing(ws, user, image_keys)

        def stage(i: int) -> tuple[str, int] | None:
            data = res.images[i].image_path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            old = existing_img.get(image_keys[i])
            if old is not None and old[1] == sha and cat._label(old[2]).dominates(lab):
                return sha, len(data)  # already there, at this label or above: nothing to store
            ws.blobs.stage_bytes(data, sha)
            return sha, len(data)

        try:
            staged = list(pool.map(stage, range(len(res.images))))
        except OSError as exc:
            ws.blobs.discard()
            raise UsageError(f"cannot read an image: {exc}") from None
        image_ids: list[str] = []
        image_labels: list[Label] = []
        new_images: list[NewVersion] = []
        new_index: list[int] = []
        for i, li in enumerate(res.images):
            sha, size = staged[i]  # type: ignore[misc]
            old = existing_img.get(image_keys[i])
            if old is not None and old[1] == sha and cat._label(old[2]).dominates(lab):
                image_ids.append(old[3])
                image_labels.append(cat._label(old[2]))
                continue
            if old is not None and not lab.dominates(cat._label(old[2])):
                ws.blobs.discard()
                raise UsageError(f"{li.image_path} is already in the catalog labelled "
                                 f"{format_label(cat._label(old[2]))}; it cannot get the lower label {format_label(lab)}")
            from casemate.store.blobs import StagedBlob

            new_images.append(NewVersion(blob=StagedBlob(sha, size), name=li.image_path.name, kind="image", label=lab,
                                         metadata={"width": li.width, "height": li.height},
                                         source_path=str(li.image_path), source_key=image_keys[i],
                                         asset_pk=old[0] if old else None))
            new_index.append(i)
            image_ids.append("")
            image_labels.append(lab)
        made: list[Version] = []
        for s in range(0, len(new_images), BATCH):
            made.extend(cat.insert_batch(user, new_images[s : s + BATCH], pool))
        for i, v in zip(new_index, made, strict=True):
            image_ids[i] = v.id
        # 2. annotations, derived from their image
        ann_keys = [f"annotation:{fmt}:{os.path.realpath(li.label_path or li.image_path)}#{li.rel_name}"
                    for li in res.images]
        existing_ann = _existing(ws, user, ann_keys)
        img_pk = _pks(ws, image_ids)
        ann_ids: list[str] = []
        ann_labels: list[Label] = []
        ann_shas: list[str] = []
        new_anns: list[NewVersion] = []
        new_ann_index: list[int] = []
        for i, li in enumerate(res.images):
            a_label = lub([lab, image_labels[i]])
            body = canonical_bytes(li.canonical(staged[i][0]))  # type: ignore[index]
            sha = hashlib.sha256(body).hexdigest()
            ann_shas.append(sha)
            old = existing_ann.get(ann_keys[i])
            if old is not None and old[1] == sha and cat._label(old[2]) == a_label:
                ann_ids.append(old[3])
                ann_labels.append(a_label)
                continue
            blob = ws.blobs.stage_bytes(body, sha)
            new_anns.append(NewVersion(blob=blob, name=Path(li.rel_name).with_suffix(".json").name, kind="annotation",
                                       label=a_label, parents=(img_pk[image_ids[i]],), parent_ids=(image_ids[i],),
                                       metadata={"objects": len(li.objects), "format": fmt,
                                                 "classes": sorted({o["class"] for o in li.objects})},
                                       source_path=str(li.label_path) if li.label_path else None,
                                       source_key=ann_keys[i], asset_pk=old[0] if old else None))
            new_ann_index.append(i)
            ann_ids.append("")
            ann_labels.append(a_label)
        made = []
        for s in range(0, len(new_anns), BATCH):
            made.extend(cat.insert_batch(user, new_anns[s : s + BATCH], pool))
        for i, v in zip(new_ann_index, made, strict=True):
            ann_ids[i] = v.id
    # 3. the dataset: a manifest of pairs, derived from every annotation
    ds_name = name or root.resolve().name
    counts: dict[str, int] = {}
    for li in res.images:
        for o in li.objects:
            counts[o["class"]] = counts.get(o["class"], 0) + 1
    items = [{"name": li.rel_name, "image": image_ids[i], "image_sha256": staged[i][0],  # type: ignore[index]
              "annotation": ann_ids[i], "annotation_sha256": ann_shas[i], "objects": len(li.objects)}
             for i, li in enumerate(res.images)]
    manifest = {"format": MANIFEST_FORMAT, "name": ds_name, "source_format": fmt, "classes": res.classes,
                "items": items}
    report = ImportReport(dataset=None, images_new=len(new_images), annotations_new=len(new_anns),  # type: ignore[arg-type]
                          classes=res.classes, objects=sum(counts.values()))
    report.dataset = _store_dataset(ws, user, manifest, ann_ids, lub(ann_labels),
                                    source_key=f"dataset:{fmt}:{root.resolve()}:{ds_name}",
                                    metadata={"source_format": fmt, "source": str(root), "class_counts": counts})
    report.unchanged = not new_images and not new_anns and report.dataset.metadata.get("_existing", False)
    report.dataset.metadata.pop("_existing", None)
    return report


def _store_dataset(ws: Workspace, user: User, manifest: dict[str, Any], parent_ids: list[str], label: Label,
                   *, source_key: str, metadata: dict[str, Any]) -> Version:
    cat = ws.catalog
    body = canonical_bytes(manifest)
    sha = hashlib.sha256(body).hexdigest()
    old = _existing(ws, user, [source_key]).get(source_key)
    if old is not None and old[1] == sha and cat._label(old[2]) == label:
        v = cat.get(user, old[3], audit=False)
        v.metadata["_existing"] = True
        return v
    pk = _pks(ws, parent_ids)
    meta = {**metadata, "classes": manifest["classes"],
            "counts": {"images": len(manifest["items"]),
                       "objects": sum(it["objects"] for it in manifest["items"])}}
    nv = NewVersion(blob=ws.blobs.stage_bytes(body, sha), name=manifest["name"], kind="dataset", label=label,
                    parents=tuple(pk[p] for p in parent_ids), parent_ids=tuple(dict.fromkeys(parent_ids)),
                    metadata=meta, source_key=source_key, asset_pk=old[0] if old else None)
    return cat.insert_batch(user, [nv])[0]


# -- reading a dataset -------------------------------------------------------------------------
def get_dataset(ws: Workspace, user: User, ref: str) -> tuple[Version, dict[str, Any]]:
    """A dataset version the user may read, and its manifest (checked against the blob's hash)."""
    v = ws.catalog.get(user, ref)
    if v.kind != "dataset":
        raise UsageError(f"{ref} is a {v.kind}, not a dataset: see `casemate dataset ls`")
    manifest = json.loads(ws.catalog.read_bytes(user, v.id))
    if manifest.get("format") != MANIFEST_FORMAT:
        raise UsageError(f"{ref}: not a {MANIFEST_FORMAT} manifest")
    return v, manifest


def list_datasets(ws: Workspace, user: User, limit: int = 100) -> list[Version]:
    return ws.catalog.list(user, kind="dataset", limit=limit)


def load_annotations(ws: Workspace, user: User, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Each item's annotation document, read through the catalog (policy and audit apply)."""
    out = []
    for it in manifest["items"]:
        doc = json.loads(ws.catalog.read_bytes(user, it["annotation"]))
        if doc.get("image_sha256") != it["image_sha256"]:
            raise CasemateError(f"annotation {it['annotation']} does not belong to image {it['image']}")
        out.append(doc)
    return out


# -- class maps --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassMap:
    """Source class name -> target class name; names mapped to "" (or absent when strict) are dropped."""

    mapping: dict[str, str]

    @staticmethod
    def parse(file: str | Path | None = None, pairs: tuple[str, ...] | list[str] = ()) -> ClassMap:
        m: dict[str, str] = {}
        if file is not None:
            import yaml

            p = Path(file)
            try:
                doc = yaml.safe_load(p.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as exc:
                raise UsageError(f"{p}: cannot read the class map ({exc})") from None
            if not isinstance(doc, dict):
                raise UsageError(f"{p}: a class map is a mapping 'source: target'")
            m.update({str(k): "" if v is None else str(v) for k, v in doc.items()})
        for pair in pairs:
            if "=" not in pair:
                raise UsageError(f"--map {pair!r}: write SOURCE=TARGET (TARGET empty to drop the class)")
            k, v = pair.split("=", 1)
            m[k.strip()] = v.strip()
        return ClassMap(m)

    def apply(self, docs: list[dict[str, Any]], taxonomy: list[str] | None = None) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Documents with mapped classes; names unmapped (and not already in the taxonomy) are dropped
        and counted. A target outside the taxonomy is a usage error."""
        if taxonomy is not None:
            bad = sorted({t for t in self.mapping.values() if t and t not in taxonomy})
            if bad:
                raise UsageError(f"class map targets {', '.join(bad)} are not in the model's taxonomy "
                                 f"({', '.join(taxonomy)})")
        dropped: dict[str, int] = {}
        out = []
        for d in docs:
            objs = []
            for o in d["objects"]:
                c = o["class"]
                t = self.mapping.get(c, c if taxonomy is None or c in taxonomy else "")
                if not t:
                    dropped[c] = dropped.get(c, 0) + 1
                    continue
                objs.append({**o, "class": t})
            out.append({**d, "objects": objs})
        return out, dropped


# -- export ------------------------------------------------------------------------------------
def _unique_names(manifest: dict[str, Any]) -> list[str]:
    seen: set[str] = set()
    names = []
    for it in manifest["items"]:
        n = it["name"]
        if n in seen:
            stem, suf = os.path.splitext(n)
            n = f"{stem}-{it['image'][:6]}{suf}"
        seen.add(n)
        names.append(n)
    return names


def export_dataset(ws: Workspace, user: User, ref: str, out: str | Path, *, fmt: str,
                   class_map: ClassMap | None = None, taxonomy: list[str] | None = None,
                   link: bool = False) -> dict[str, Any]:
    """Write a dataset in a tool's layout under `out` (must be empty or new).

    `link` hard-links image blobs instead of copying (same filesystem only; for training jobs).
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty: give a new or empty folder")
    v, manifest = get_dataset(ws, user, ref)
    docs = load_annotations(ws, user, manifest)
    classes = list(manifest["classes"])
    dropped: dict[str, int] = {}
    if class_map is not None or taxonomy is not None:
        docs, dropped = (class_map or ClassMap({})).apply(docs, taxonomy)
        classes = list(taxonomy) if taxonomy is not None else list(dict.fromkeys(
            class_map.mapping.get(c, c) for c in classes if class_map.mapping.get(c, c)))  # type: ignore[union-attr]
    names = _unique_names(manifest)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    for it, n in zip(manifest["items"], names, strict=True):
        src = ws.catalog.blob_path(user, it["image"])
        dst = img_dir / n
        dst.parent.mkdir(parents=True, exist_ok=True)
        if link:
            try:
                os.link(src, dst)
                continue
            except OSError:
                pass
        shutil.copyfile(src, dst)
    if fmt in ("yolo", "yolo-obb"):
        import yaml

        for doc, n in zip(docs, names, strict=True):
            write_atomic(out / "labels" / Path(n).with_suffix(".txt"), yolo_lines(doc, classes, obb=fmt == "yolo-obb"))
        write_atomic(out / "data.yaml", yaml.safe_dump({"path": ".", "train": "images", "val": "images",
                                                        "names": dict(enumerate(classes))}, sort_keys=False))
    elif fmt == "dota":
        for doc, n in zip(docs, names, strict=True):
            write_atomic(out / "labelTxt" / Path(n).with_suffix(".txt"), dota_lines(doc))
    else:
        write_atomic(out / "annotations.json", json.dumps(coco_document(list(zip(names, docs, strict=True)), classes)))
    return {"dataset": v.id, "out": str(out), "format": fmt, "images": len(names), "classes": classes,
            "dropped": dropped}


# -- split -------------------------------------------------------------------------------------
def split_dataset(ws: Workspace, user: User, ref: str, *, holdout: float, seed: int = 0) -> tuple[Version, Version]:
    """Two datasets split from `ref` (train, holdout), by image, the same for the same seed; each derives
    from its own members' annotations and names `ref` in its manifest (`split.of`).

    An image's side depends only on its content hash and the seed, so the split does not move when
    images are added or the dataset is re-imported.
    """
    if not 0.0 < holdout < 1.0:
        raise UsageError("--holdout must be between 0 and 1 (e.g. 0.2)")
    v, manifest = get_dataset(ws, user, ref)
    items = manifest["items"]
    if len(items) < 2:
        raise UsageError(f"{ref} has {len(items)} image(s): a split needs at least two")

    def rank(it: dict[str, Any]) -> str:
        return hashlib.sha256(f"{seed}:{it['image_sha256']}".encode()).hexdigest()

    order = sorted(range(len(items)), key=lambda i: (rank(items[i]), i))
    k = min(max(1, round(len(items) * holdout)), len(items) - 1)
    hold = set(order[:k])
    out = []
    for part, chosen in (("train", [i for i in range(len(items)) if i not in hold]), ("holdout", sorted(hold))):
        m = {**manifest, "name": f"{manifest['name']}:{part}", "items": [items[i] for i in chosen],
             "split": {"of": v.id, "part": part, "holdout": holdout, "seed": seed}}
        # Derived from its own members' annotations, not the whole dataset: a model trained on the
        # train part then has no holdout image among its ancestors.
        members = [it["annotation"] for it in m["items"]]
        labels = [ws.catalog.get(user, a, audit=False).label for a in members]
        out.append(_store_dataset(ws, user, m, members, lub(labels), source_key=f"split:{v.id}:{seed}:{holdout}:{part}",
                                  metadata={"split": m["split"], "source_format": manifest.get("source_format")}))
        out[-1].metadata.pop("_existing", None)
    return out[0], out[1]


def dataset_summary(v: Version, manifest: dict[str, Any]) -> dict[str, Any]:
    return {"id": v.id, "name": v.name, "label": format_label(v.label), "created_by": v.created_by,
            "created_at": v.created_at, "classes": manifest["classes"], "images": len(manifest["items"]),
            "objects": sum(it["objects"] for it in manifest["items"]),
            "class_counts": v.metadata.get("class_counts"), "source_format": manifest.get("source_format"),
            "split": manifest.get("split")}
