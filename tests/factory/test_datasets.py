"""Datasets in the catalog: import per layout, lineage and labels, idempotence, bad input
reported per file and line with nothing stored, export round trips, deterministic splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factory_helpers import coco_folder, dota_folder, write_png, yolo_folder

from casemate.factory.datasets import (
    ClassMap,
    ImportFailed,
    export_dataset,
    get_dataset,
    import_dataset,
    split_dataset,
)
from casemate.factory.formats import read_folder


def _count(ws, kind: str) -> int:
    return len(ws.catalog.list(ws.acting_user("admin"), kind=kind, limit=1000, audit=False))


def test_yolo_import_makes_images_annotations_and_a_dataset_with_lineage(ws, tmp_path: Path) -> None:
    root = yolo_folder(tmp_path / "y", n=4)
    admin = ws.acting_user("admin")
    rep = import_dataset(ws, admin, root, fmt="yolo", label="DR")
    ds, manifest = get_dataset(ws, admin, rep.dataset.id)
    assert ds.kind == "dataset" and str(ds.label.level.name) == "DR"
    assert manifest["classes"] == ["car", "bus"] and len(manifest["items"]) == 4
    assert _count(ws, "image") == 4 and _count(ws, "annotation") == 4
    it = manifest["items"][0]
    ann = ws.catalog.get(admin, it["annotation"])
    assert ann.parents == (it["image"],)  # an annotation derives from its image
    assert set(ds.parents) == {i["annotation"] for i in manifest["items"]}
    doc = json.loads(ws.catalog.read_bytes(admin, it["annotation"]))
    assert doc["width"] == 64 and doc["height"] == 48 and doc["objects"][0]["class"] in ("car", "bus")
    # hidden from a reader below the label; visible at it
    from casemate.errors import NotFound

    with pytest.raises(NotFound):
        get_dataset(ws, ws.acting_user("nora"), ds.id)
    assert get_dataset(ws, ws.acting_user("dana"), ds.id)[0].id == ds.id


def test_reimport_creates_nothing_new(ws, tmp_path: Path) -> None:
    root = yolo_folder(tmp_path / "y", n=3, names_file="classes.txt")
    admin = ws.acting_user("admin")
    first = import_dataset(ws, admin, root, fmt="yolo", label="NP")
    n_versions = len(ws.catalog.list(admin, limit=1000, audit=False))
    again = import_dataset(ws, admin, root, fmt="yolo", label="NP")
    assert again.dataset.id == first.dataset.id and again.unchanged
    assert again.images_new == 0 and again.annotations_new == 0
    assert len(ws.catalog.list(admin, limit=1000, audit=False)) == n_versions
    # one changed label file: one new annotation version and a new dataset version, images untouched
    lab = root / "labels" / "img001.txt"
    lab.write_text("0 0.5 0.5 0.1 0.1\n")
    third = import_dataset(ws, admin, root, fmt="yolo", label="NP")
    assert third.images_new == 0 and third.annotations_new == 1 and third.dataset.id != first.dataset.id
    assert third.dataset.asset_id == first.dataset.asset_id


def test_dataset_label_is_the_lub_of_its_members(ws, tmp_path: Path) -> None:
    """An image already in the catalog at S//ALPHA lifts its annotation and the dataset."""
    root = yolo_folder(tmp_path / "y", n=2)
    sam = ws.acting_user("sam")
    ws.catalog.put(sam, root / "images" / "img000.png", name="img000.png", kind="image", label="S//ALPHA",
                   source_key=str((root / "images" / "img000.png").resolve()))
    rep = import_dataset(ws, sam, root, fmt="yolo", label="DR")
    from casemate.security.labels import format_label

    assert format_label(rep.dataset.label) == "S//ALPHA"
    _, manifest = get_dataset(ws, sam, rep.dataset.id)
    labels = sorted(format_label(ws.catalog.get(sam, i["annotation"]).label) for i in manifest["items"])
    assert labels == ["DR", "S//ALPHA"]


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: (r / "labels" / "img001.txt").write_text("0 0.5 0.5 0.1\n"), "img001.txt:1: expected 5 values"),
        (lambda r: (r / "labels" / "img002.txt").write_text("0 0.5 0.5 0.1 0.1\n0 x 0.5 0.1 0.1\n"),
         "img002.txt:2: values must be numbers"),
        (lambda r: (r / "labels" / "img000.txt").write_text("5 0.5 0.5 0.1 0.1\n"), "img000.txt:1: unknown class id 5"),
        (lambda r: (r / "labels" / "img000.txt").write_text("0 1.05 0.5 0.3 0.1\n"), "img000.txt:1: box outside the 64x48"),
        (lambda r: (r / "labels" / "img001.txt").unlink(), "img001.png: image without labels"),
        (lambda r: (r / "labels" / "stray.txt").write_text("0 0.5 0.5 0.1 0.1\n"), "stray.txt: labels without an image"),
        (lambda r: (r / "images" / "img002.png").write_bytes(b"not a png"), "img002.png: not a readable image"),
    ],
)
def test_bad_input_is_named_and_nothing_is_stored(ws, tmp_path: Path, mutate, expected: str) -> None:
    root = yolo_folder(tmp_path / "y", n=3)
    mutate(root)
    admin = ws.acting_user("admin")
    with pytest.raises(ImportFailed) as exc:
        import_dataset(ws, admin, root, fmt="yolo", label="NP")
    assert expected in exc.value.message, exc.value.message
    assert _count(ws, "image") == 0 and _count(ws, "annotation") == 0 and _count(ws, "dataset") == 0


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    root = yolo_folder(tmp_path / "y", n=3)
    (root / "labels" / "img000.txt").write_text("0 0.5\n9 0.5 0.5 0.1 0.1\n")
    (root / "labels" / "img002.txt").unlink()
    res = read_folder(root, "yolo")
    assert [(Path(p.path).name, p.line) for p in res.problems] == [("img002.png", None), ("img000.txt", 1),
                                                                   ("img000.txt", 2)]


def test_cli_import_failure_exits_non_zero_and_names_the_line(cm, tmp_path: Path) -> None:
    assert cm("init")[0] == 0
    root = yolo_folder(tmp_path / "y", n=2)
    (root / "labels" / "img001.txt").write_text("0 0.5 0.5 0.1 0.1\n0 0.5 0.5\n")
    rc, out, err = cm("dataset", "import", str(root), "--format", "yolo", "--label", "DR")
    assert rc == 1 and "img001.txt:2" in err and "nothing stored" in err and "Traceback" not in err
    rc, out, _ = cm("ls", "--json")
    assert json.loads(out) == []


@pytest.mark.parametrize("fmt", ["yolo", "yolo-obb", "dota", "coco"])
def test_export_then_import_gives_the_same_annotations(ws, tmp_path: Path, fmt: str) -> None:
    admin = ws.acting_user("admin")
    if fmt == "yolo":
        src = yolo_folder(tmp_path / "src", n=3)
    elif fmt == "dota":
        src = dota_folder(tmp_path / "src")
    elif fmt == "coco":
        src = coco_folder(tmp_path / "src")
    else:
        src = yolo_folder(tmp_path / "src", n=3)
        for p in (src / "labels").glob("*.txt"):  # make it oriented: rotate nothing, just 4 corners
            rows = []
            for ln in p.read_text().split("\n"):
                if ln:
                    c, cx, cy, w, h = ln.split()
                    cx, cy, w, h = map(float, (cx, cy, w, h))
                    pts = [cx - w / 2, cy - h / 3, cx + w / 2, cy - h / 2, cx + w / 3, cy + h / 2, cx - w / 2, cy + h / 2]
                    rows.append(c + " " + " ".join(f"{v:.6f}" for v in pts))
            p.write_text("\n".join(rows) + "\n")
    first = import_dataset(ws, admin, src, fmt=fmt, label="NP", name="a")
    out = tmp_path / "out"
    export_dataset(ws, admin, first.dataset.id, out, fmt=fmt)
    second = import_dataset(ws, admin, out, fmt=fmt, label="NP", name="b")
    m1 = get_dataset(ws, admin, first.dataset.id)[1]
    m2 = get_dataset(ws, admin, second.dataset.id)[1]
    assert m1["classes"] == m2["classes"] if fmt != "dota" else sorted(m1["classes"]) == sorted(m2["classes"])
    assert sorted(i["annotation_sha256"] for i in m1["items"]) == sorted(i["annotation_sha256"] for i in m2["items"])
    assert sorted(i["image_sha256"] for i in m1["items"]) == sorted(i["image_sha256"] for i in m2["items"])


def test_yolo_export_is_what_ultralytics_reads(ws, tmp_path: Path) -> None:
    import yaml

    admin = ws.acting_user("admin")
    rep = import_dataset(ws, admin, yolo_folder(tmp_path / "y", n=2), fmt="yolo", label="NP")
    export_dataset(ws, admin, rep.dataset.id, tmp_path / "o", fmt="yolo")
    data = yaml.safe_load((tmp_path / "o" / "data.yaml").read_text())
    assert data["names"] == {0: "car", 1: "bus"} and data["train"] == "images"
    assert sorted(p.name for p in (tmp_path / "o" / "labels").iterdir()) == ["img000.txt", "img001.txt"]


def test_split_is_deterministic_by_image_and_disjoint(ws, tmp_path: Path) -> None:
    admin = ws.acting_user("admin")
    rep = import_dataset(ws, admin, yolo_folder(tmp_path / "y", n=10), fmt="yolo", label="DR")
    tr, ho = split_dataset(ws, admin, rep.dataset.id, holdout=0.2, seed=3)
    tr2, ho2 = split_dataset(ws, admin, rep.dataset.id, holdout=0.2, seed=3)
    assert (tr.id, ho.id) == (tr2.id, ho2.id)  # the same split again: nothing new
    mt, mh = get_dataset(ws, admin, tr.id)[1], get_dataset(ws, admin, ho.id)[1]
    a, b = {i["image"] for i in mt["items"]}, {i["image"] for i in mh["items"]}
    assert len(b) == 2 and len(a) == 8 and not a & b
    assert set(tr.parents) == {i["annotation"] for i in mt["items"]} and tr.label == rep.dataset.label
    assert mt["split"]["of"] == rep.dataset.id
    other = [split_dataset(ws, admin, rep.dataset.id, holdout=0.2, seed=s)[1] for s in range(4, 8)]
    assert any({i["image"] for i in get_dataset(ws, admin, h.id)[1]["items"]} != b for h in other)
    # Re-importing the images under new names keeps each image on its side (by content)
    src2 = tmp_path / "y2"
    export_dataset(ws, admin, rep.dataset.id, src2, fmt="yolo")
    for p in (src2 / "images").iterdir():
        p.rename(p.with_name("z" + p.name))
    for p in (src2 / "labels").iterdir():
        p.rename(p.with_name("z" + p.name))
    rep2 = import_dataset(ws, admin, src2, fmt="yolo", label="DR")
    _, h2 = split_dataset(ws, admin, rep2.dataset.id, holdout=0.2, seed=3)
    shas = {i["image_sha256"] for i in get_dataset(ws, admin, h2.id)[1]["items"]}
    assert shas == {i["image_sha256"] for i in mh["items"]}


def test_class_map_onto_a_taxonomy(ws, tmp_path: Path) -> None:
    admin = ws.acting_user("admin")
    rep = import_dataset(ws, admin, dota_folder(tmp_path / "d"), fmt="dota", label="NP")
    cmap = ClassMap.parse(pairs=["small-vehicle=vehicle/car/sedan"])
    res = export_dataset(ws, admin, rep.dataset.id, tmp_path / "o", fmt="dota", class_map=cmap,
                         taxonomy=["vehicle/car/sedan", "ship/boat/motorboat"])
    assert res["dropped"] == {"ship": 3}
    text = (tmp_path / "o" / "labelTxt" / "P0000.txt").read_text()
    assert "vehicle/car/sedan" in text and "ship" not in text
    from casemate.errors import UsageError

    with pytest.raises(UsageError, match="not in the model's taxonomy"):
        ClassMap.parse(pairs=["ship=boat"]).apply([], ["vehicle/car/sedan"])


def test_coco_unknown_category_and_missing_file(ws, tmp_path: Path) -> None:
    root = coco_folder(tmp_path / "c")
    doc = json.loads((root / "instances.json").read_text())
    doc["annotations"][1]["category_id"] = 99
    doc["images"].append({"id": 77, "file_name": "gone.png", "width": 10, "height": 10})
    (root / "instances.json").write_text(json.dumps(doc))
    with pytest.raises(ImportFailed) as exc:
        import_dataset(ws, ws.acting_user("admin"), root, fmt="coco", label="NP")
    assert "annotations[1]: unknown category_id 99" in exc.value.message
    assert "'gone.png' not found" in exc.value.message


def test_label_above_clearance_is_refused_before_reading(ws, tmp_path: Path) -> None:
    from casemate.errors import UsageError

    root = tmp_path / "y"
    write_png(root / "images" / "a.png", 8, 8, 1)
    with pytest.raises(UsageError, match="above your clearance"):
        import_dataset(ws, ws.acting_user("dana"), root, fmt="yolo", label="S")


def test_kit_ais_cars_imports(ws, tmp_path: Path) -> None:
    from factory_helpers import shared_data

    root = shared_data("imagery", "kit-ais-cars")
    admin = ws.acting_user("admin")
    rep = import_dataset(ws, admin, root, fmt="yolo", label="DR", classes="car truck bus minibus cyclist".split(),
                         gsd=0.13)
    assert rep.to_json()["images"] == 65 and rep.objects == 2593
    counts = rep.dataset.metadata["class_counts"]
    assert counts == {"car": 2546, "bus": 25, "minibus": 22}


def test_a_box_cut_by_the_edge_is_clipped_to_the_image(tmp_path: Path) -> None:
    root = yolo_folder(tmp_path / "y", n=1)
    (root / "labels" / "img000.txt").write_text("0 0.95 0.5 0.2 0.1\n")  # 64 px wide: x from 54.4 to 67.2
    res = read_folder(root, "yolo")
    assert not res.problems
    assert res.images[0].objects[0]["bbox"] == [54.4, 21.6, 9.6, 4.8]
