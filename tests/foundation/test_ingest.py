import os
import subprocess
import sys

import pytest

from casemate.catalog.ingest import ingest
from casemate.errors import UsageError

from .helpers import docx_bytes, encrypted_pdf_bytes, make_workspace, pdf_bytes, zip_bomb_docx


@pytest.fixture
def ws(home):
    ws = make_workspace(home)
    yield ws
    ws.close()


def write(path, data: bytes | str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_kinds_and_extracted_text(ws, tmp_path) -> None:
    src = tmp_path / "in"
    write(src / "a.txt", "plain text é")
    write(src / "b.md", "# Title\nbody")
    write(src / "c.html", "<html><head><script>var x=1</script></head><body><h1>Head</h1><p>Para</p></body></html>")
    write(src / "d.pdf", pdf_bytes(["Page one words", "Page two words"]))
    write(src / "e.docx", docx_bytes(["Premier paragraphe", "Second"]))
    write(src / "f.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    write(src / "g.wav", b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 32)
    write(src / "h.csv", "t,lat,lon\n1,2,3\n4,5,6\n")
    write(src / "i.jsonl", '{"t":1}\n{"t":2}\n')
    write(src / "deep" / "er" / "j.bin", b"\x01\x02\x03")
    admin = ws.acting_user("admin")
    report = ingest(ws, admin, [src], "DR")
    assert report.ok and not report.skipped
    by_name = {v.name: v for v in report.ingested}
    kinds = {n: v.kind for n, v in by_name.items()}
    assert kinds == {
        "a.txt": "document", "b.md": "document", "c.html": "document", "d.pdf": "document",
        "e.docx": "document", "f.png": "image", "g.wav": "audio", "h.csv": "telemetry",
        "i.jsonl": "telemetry", "j.bin": "other",
    }
    text = lambda n: ws.catalog.text(admin, by_name[n].id)  # noqa: E731
    assert text("a.txt") == "plain text é"
    assert "Head" in text("c.html") and "Para" in text("c.html") and "var x" not in text("c.html")
    assert text("d.pdf").split("\f") == ["Page one words", "Page two words"]
    assert text("e.docx") == "Premier paragraphe\nSecond"
    assert by_name["h.csv"].metadata["rows"] == 2


def test_rerun_creates_nothing_and_same_content_is_one_blob(ws, tmp_path) -> None:
    src = tmp_path / "in"
    write(src / "a.txt", "same")
    write(src / "b.txt", "same")
    admin = ws.acting_user("admin")
    first = ingest(ws, admin, [src], "NP")
    assert len(first.ingested) == 2
    assert first.ingested[0].sha256 == first.ingested[1].sha256
    root = ws.home / "blobs"
    blobs = [p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] != "tmp"]
    assert len(blobs) == 1
    again = ingest(ws, admin, [src], "NP")
    assert again.ingested == [] and len(again.skipped) == 2
    # changed content at the same path: a new version of the same asset
    write(src / "a.txt", "changed")
    third = ingest(ws, admin, [src], "NP")
    assert len(third.ingested) == 1 and third.ingested[0].asset_id == first.ingested[0].asset_id
    # a lower label for a file already in the catalog is refused
    write(src / "a.txt", "changed again")
    ingest(ws, admin, [src / "b.txt"], "S")
    lower = ingest(ws, admin, [src / "b.txt"], "NP")
    assert lower.failed and "lower label" in lower.failed[0][1]


def test_bad_inputs_get_clear_errors_and_the_rest_is_ingested(ws, tmp_path) -> None:
    src = tmp_path / "in"
    write(src / "good.txt", "good")
    write(src / "empty.txt", b"")
    write(src / "trunc.pdf", pdf_bytes(["some words here"])[:-40])
    write(src / "enc.pdf", encrypted_pdf_bytes())
    write(src / "bomb.docx", zip_bomb_docx())
    write(src / "broken.docx", b"PK\x03\x04garbage")
    write(src / "fake.png", b"not a png at all")
    os.symlink(src / "loop", src / "loop")
    os.symlink(src, src / "self")  # a folder link back to its parent
    os.symlink(src / "gone.txt", src / "dangling.txt")
    fifo = src / "pipe"
    os.mkfifo(fifo)
    admin = ws.acting_user("admin")
    report = ingest(ws, admin, [src], "NP")
    assert [v.name for v in report.ingested] == ["good.txt"]
    errors = {os.path.basename(p): e for p, e in report.failed}
    assert "empty" in errors["empty.txt"]
    assert "truncated PDF" in errors["trunc.pdf"]
    assert "encrypted PDF" in errors["enc.pdf"]
    assert "zip bomb" in errors["bomb.docx"]
    assert "DOCX" in errors["broken.docx"]
    assert "does not match its extension" in errors["fake.png"]
    assert "loop" in errors["loop"]
    assert "loop" in errors["self"]
    assert "broken symbolic link" in errors["dangling.txt"]
    assert "not a regular file" in errors["pipe"]
    # nothing partial: only the good file has a row, no staged temp file remains
    assert [v.name for v in ws.catalog.list(admin)] == ["good.txt"]
    assert list((ws.home / "blobs" / "tmp").rglob("*.part")) == []
    failed_entries = [e for e in ws.audit.tail(100) if e.action == "ingest.failed"]
    assert len(failed_entries) == len(report.failed)


def test_unknown_label_is_one_clear_error(ws, tmp_path) -> None:
    write(tmp_path / "a.txt", "a")
    with pytest.raises(UsageError, match="unknown classification level 'Confidentiel'"):
        ingest(ws, ws.acting_user("admin"), [tmp_path / "a.txt"], "Confidentiel")
    with pytest.raises(UsageError, match="above your clearance"):
        ingest(ws, ws.acting_user("dana"), [tmp_path / "a.txt"], "S")


def test_cli_exit_code_and_summary(home, tmp_path) -> None:
    src = tmp_path / "in"
    write(src / "a.txt", "a")
    write(src / "z.txt", b"")
    cm = [sys.executable, "-m", "casemate.cli", "--home", str(home)]
    assert subprocess.run(cm + ["init"], capture_output=True).returncode == 0
    out = subprocess.run(cm + ["ingest", str(src), "--label", "NP"], capture_output=True, text=True)
    assert out.returncode == 1
    assert "ingested 1, skipped 0 (unchanged), failed 1" in out.stdout
    assert "z.txt: empty file" in out.stderr
    assert "Traceback" not in out.stderr
    bad = subprocess.run(cm + ["ingest", str(src), "--label", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown classification level 'nope'" in bad.stderr


def test_concurrent_ingests_on_one_workspace(home, tmp_path) -> None:
    from casemate.workspace import Workspace

    Workspace.init(home).close()
    procs = []
    for w in range(3):
        src = tmp_path / f"in{w}"
        for i in range(80):
            write(src / f"w{w}-{i}.txt", f"writer {w} file {i}")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "casemate.cli", "--home", str(home), "ingest", str(src), "--label", "NP",
             "--batch-size", "9", "--no-hooks"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    with Workspace.open(home) as ws:
        versions = ws.catalog.list(ws.acting_user("admin"), limit=500)
        assert len(versions) == 240
        assert all(ws.blobs.verify(v.sha256) for v in versions)
        assert ws.audit.verify().ok
    # every process removed its staging folder on close
    assert [p.name for p in (home / "blobs" / "tmp").iterdir()] == []
