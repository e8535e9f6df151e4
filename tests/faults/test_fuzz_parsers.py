"""Fuzzing (hypothesis, derandomised: the same cases in every run) of every parser that reads user
files: catalog text extraction (PDF, DOCX, HTML, text), audio headers (speech), GeoTIFF (imagery),
scenario YAML (pack), dataset labels (factory: YOLO, YOLO-OBB, DOTA, COCO).

Each input is a valid seed file damaged by hypothesis (bytes overwritten, inserted, cut) or
made up outright. The parser must return, or raise one of the project's clear errors
(CasemateError); anything else (a crash), or a case running past the deadline (a hang), fails.
The factory readers report problems in their result instead of raising, so any exception from
them fails. Crashes found here are kept as @example cases.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import wave
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from casemate.errors import CasemateError
from foundation.helpers import docx_bytes, pdf_bytes

CASES = int(os.environ.get("CASEMATE_FUZZ_CASES", "250"))  # per target (11 targets): ~35 s of CPU
FUZZ = settings(max_examples=CASES, derandomize=True, database=None, deadline=timedelta(seconds=5),
                phases=[Phase.explicit, Phase.generate] if os.environ.get("CASEMATE_FUZZ_NO_SHRINK") else tuple(Phase),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
pytestmark = pytest.mark.timeout(600)


def clear_errors_only(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except CasemateError as exc:
        assert exc.message.strip(), "an error without a message"


# -- damage ------------------------------------------------------------------------------------
_edit = st.tuples(st.sampled_from(["set", "insert", "cut", "truncate"]), st.floats(0, 1), st.binary(min_size=1, max_size=16))


def damaged(seed: bytes, max_edits: int = 4) -> st.SearchStrategy[bytes]:
    """`seed` with a few random edits, or random bytes now and then."""

    def apply(edits: list[tuple[str, float, bytes]]) -> bytes:
        data = bytearray(seed)
        for op, where, blob in edits:
            i = int(where * len(data)) if data else 0
            if op == "set":
                data[i:i + len(blob)] = blob
            elif op == "insert":
                data[i:i] = blob
            elif op == "cut":
                del data[i:i + 1 + blob[0] % 64]
            else:
                del data[max(1, i):]
        return bytes(data)

    return st.one_of(st.lists(_edit, min_size=1, max_size=max_edits).map(apply), st.binary(max_size=512))


def _tmp_file(data: bytes, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(suffix=suffix, prefix="casemate-fuzz-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return Path(name)


# -- catalog: sniffing and text extraction ---------------------------------------------------------
PDF = pdf_bytes(["Rapport de logistique", "page deux"])
DOCX = docx_bytes(["Titre", "Le convoi part mardi."])
HTML = b"<html><head><title>t</title><script>x()</script></head><body><p>Le <b>convoi</b></p><table><tr><td>1</td></tr></table></body></html>"


def _extract(data: bytes, name: str) -> None:
    from casemate.catalog.extract import extract, sniff

    s = sniff(data[:8192], name)
    if s.kind in ("document", "telemetry"):
        extract(s.fmt, data)


@FUZZ
@given(damaged(PDF, 6))
def test_fuzz_pdf(data: bytes) -> None:
    clear_errors_only(lambda: _extract(data, "f.pdf"))


def _docx_damaged(field: str) -> bytes:
    """DOCX with one zip field of word/document.xml damaged (crashes found by this fuzzer)."""
    data = bytearray(DOCX)
    if field == "local header":  # BadZipFile "Truncated file header" raised when the member is opened
        i = data.index(b"PK\x03\x04", data.index(b"PK\x03\x04") + 4)
        data[i:i + 4] = b"PK\x00\x00"
    else:  # "version needed to extract" 18.5: NotImplementedError from ZipFile()
        i = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 4)
        data[i + 6] = 185
    return bytes(data)


@FUZZ
@given(damaged(DOCX, 6))
@example(_docx_damaged("local header"))
@example(_docx_damaged("version"))
def test_fuzz_docx(data: bytes) -> None:
    clear_errors_only(lambda: _extract(data, "f.docx"))


@FUZZ
@given(st.one_of(damaged(HTML, 8), st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_fuzz_html_and_text(data: bytes) -> None:
    clear_errors_only(lambda: _extract(data, "f.html"))
    clear_errors_only(lambda: _extract(data, "f.txt"))


# -- speech: audio headers -----------------------------------------------------------------------
def _wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.sin(np.arange(1600) / 5) * 8000).astype("<i2").tobytes())
    return buf.getvalue()


WAV = _wav()


def _wav_header(rate: int, channels: int, bits: int, data_len: int) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * bits // 8 & 0xFFFFFFFF,
                      channels * bits // 8 & 0xFFFF, bits)
    return b"RIFF" + struct.pack("<I", 36 + data_len) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + \
        b"data" + struct.pack("<I", data_len) + b"\0" * min(data_len, 640)


def _probe_and_decode(data: bytes) -> None:
    from casemate.speech.audio import iter_pcm, probe

    path = _tmp_file(data, ".wav")
    try:
        probe(path)
        for _ in iter_pcm(path, block_s=0.05):
            pass
    finally:
        path.unlink()


@FUZZ
@given(st.one_of(damaged(WAV[:200], 4).map(lambda b: b + WAV[200:]),
                 st.builds(_wav_header, st.integers(0, 2**32 - 1), st.integers(0, 65535),
                           st.sampled_from([0, 1, 8, 16, 24, 32, 33, 64]), st.integers(0, 2**32 - 1))))
@example(_wav_header(1014, 51597, 0, 4317215))  # no codec context: AttributeError in probe()
@example(_wav_header(1, 9, 8, 9))  # the resampler refuses it: av ArgumentError from iter_pcm
def test_fuzz_audio_headers(data: bytes) -> None:
    clear_errors_only(lambda: _probe_and_decode(data))


# -- imagery: GeoTIFF ------------------------------------------------------------------------------
def _geotiff() -> bytes:
    import rasterio
    from rasterio.transform import from_origin

    path = _tmp_file(b"", ".tif")
    try:
        arr = (np.arange(3 * 32 * 32) % 251).astype("uint8").reshape(3, 32, 32)
        with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=3, dtype="uint8",
                           crs="EPSG:32631", transform=from_origin(500000, 5000000, 0.5, 0.5)) as ds:
            ds.write(arr)
        return path.read_bytes()
    finally:
        path.unlink()


TIFF = _geotiff()


def _raster(data: bytes) -> None:
    from casemate.imagery.raster import RasterSource

    path = _tmp_file(data, ".tif")
    try:
        with RasterSource(path) as src:
            src.read_window(0, 0, 16, 16)
            src.read_window(8, 8, 16, 16, scale=2.0)
    finally:
        path.unlink()


@FUZZ
@given(st.one_of(damaged(TIFF[:1024], 6).map(lambda b: b + TIFF[1024:]), damaged(TIFF, 3)))
def test_fuzz_geotiff(data: bytes) -> None:
    clear_errors_only(lambda: _raster(data))


# -- pack: scenario YAML -------------------------------------------------------------------------
SCENARIO = (Path(__file__).resolve().parents[2] / "src/casemate/pack/scenarios/harbour-search.yaml").read_bytes()
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=12))
_yaml_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                              st.dictionaries(st.text(max_size=10), inner, max_size=5)),
                            max_leaves=20)


def _scenario_text(data: bytes) -> None:
    from casemate.pack.scenario import load_scenario

    path = _tmp_file(data, ".yaml")
    try:
        load_scenario(path)
    finally:
        path.unlink()


def _scenario_tree(tree: Any) -> None:
    import yaml

    from casemate.pack.scenario import parse_scenario

    base = yaml.safe_load(SCENARIO)
    if isinstance(tree, dict):
        base.update(tree)  # keep most of a valid scenario, replace some keys with anything
    else:
        base = tree
    parse_scenario(base, "<fuzz>")


@FUZZ
@given(damaged(SCENARIO, 6))
@example(b"\x80")  # not UTF-8: UnicodeDecodeError from load_scenario
def test_fuzz_scenario_yaml_text(data: bytes) -> None:
    clear_errors_only(lambda: _scenario_text(data))


@FUZZ
@given(st.one_of(_yaml_values, st.dictionaries(st.sampled_from(sorted(json.loads(json.dumps(
    __import__("yaml").safe_load(SCENARIO))))), _yaml_values, max_size=4)))
@example([{}, {}])  # "{}" in the input's repr: IndexError from the error message's .format()
def test_fuzz_scenario_structure(tree: Any) -> None:
    clear_errors_only(lambda: _scenario_tree(tree))


# -- factory: dataset labels -----------------------------------------------------------------------
def _png(w: int = 40, h: int = 30) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 20, 30)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()
YOLO_LABEL = b"0 0.5 0.5 0.2 0.2\n1 0.25 0.25 0.1 0.3\n"
OBB_LABEL = b"0 0.1 0.1 0.4 0.1 0.4 0.3 0.1 0.3\n"
DOTA_LABEL = b"imagesource:GoogleEarth\ngsd:0.5\n2 2 20 2 20 12 2 12 plane 0\n"
COCO = json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
                   "categories": [{"id": 1, "name": "ship"}],
                   "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 8]}]}).encode()
DATA_YAML = b"names: [ship, plane]\n"


def _dataset(fmt: str, label: bytes, names: bytes = DATA_YAML) -> None:
    from casemate.factory.formats import read_folder

    with tempfile.TemporaryDirectory(prefix="casemate-fuzz-") as d:
        root = Path(d)
        (root / "images").mkdir()
        (root / "images" / "a.png").write_bytes(PNG)
        if fmt == "coco":
            (root / "a.json").write_bytes(label)
        else:
            folder = root / ("labelTxt" if fmt == "dota" else "labels")
            folder.mkdir()
            (folder / "a.txt").write_bytes(label)
            if fmt != "dota":
                (root / "data.yaml").write_bytes(names)
        res = read_folder(root, fmt)
        for img in res.images:
            assert img.width > 0 and img.height > 0


@FUZZ
@given(damaged(YOLO_LABEL, 6), st.one_of(st.just(DATA_YAML), damaged(DATA_YAML, 3)))
@example(YOLO_LABEL, b"\x80")  # data.yaml not UTF-8: UnicodeDecodeError from read_class_names
def test_fuzz_yolo_labels(label: bytes, names: bytes) -> None:
    clear_errors_only(lambda: _dataset("yolo", label, names))


@FUZZ
@given(damaged(OBB_LABEL, 6))
def test_fuzz_yolo_obb_labels(label: bytes) -> None:
    clear_errors_only(lambda: _dataset("yolo-obb", label))


@FUZZ
@given(damaged(DOTA_LABEL, 6))
def test_fuzz_dota_labels(label: bytes) -> None:
    clear_errors_only(lambda: _dataset("dota", label))


_coco_tree = st.fixed_dictionaries({"images": st.lists(st.fixed_dictionaries(
    {"id": _scalars, "file_name": st.one_of(st.just("a.png"), _scalars), "width": _scalars, "height": _scalars}),
    max_size=2), "categories": st.lists(st.fixed_dictionaries({"id": _scalars, "name": _scalars}), max_size=2),
    "annotations": st.lists(st.dictionaries(st.sampled_from(["id", "image_id", "category_id", "bbox",
                                                             "segmentation", "area"]), _yaml_values), max_size=3)})


@FUZZ
@given(st.one_of(damaged(COCO, 6), _coco_tree.map(lambda t: json.dumps(t).encode())))
def test_fuzz_coco_labels(label: bytes) -> None:
    clear_errors_only(lambda: _dataset("coco", label))
