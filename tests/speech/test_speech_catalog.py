"""End to end with the real model: files and catalog versions in, labelled transcripts out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from speech_helpers import EN_TEXT, EN_TEXT_2, concat, need_tools, silence, speak

from casemate.errors import NotFound, UsageError
from casemate.speech.transcribe import transcribe_source
from casemate.speech.wer import wer

ROOT = Path(__file__).resolve().parents[2]


def run_cli(home: Path, *args: str, user: str = "admin") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "casemate.cli", "--home", str(home), "--as", user, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


@pytest.fixture(scope="module")
def dialog(speech_dir: Path) -> Path:
    """Two phrases with silence before, between and after: timing is known."""
    a = speak(EN_TEXT, speech_dir / "a.wav")
    b = speak(EN_TEXT_2, speech_dir / "b.wav")
    return concat(
        [
            silence(2.0, speech_dir / "s2.wav"),
            a,
            silence(6.0, speech_dir / "s6.wav"),
            b,
            silence(2.0, speech_dir / "s2b.wav"),
        ],
        speech_dir / "dialog.wav",
    )


@pytest.fixture(scope="module")
def secret(shared_ws, dialog: Path):  # type: ignore[no-untyped-def]
    """The dialog stored at S//ALPHA by admin, transcribed through a small window (it streams)."""
    ws = shared_ws
    saved = ws.config
    ws.config = saved.model_copy(update={"speech": saved.speech.model_copy(update={"window_s": 8.0})})
    try:
        out = transcribe_source(ws, ws.acting_user("olivia"), str(dialog), label="S//ALPHA")
    finally:
        ws.config = saved
    return out


def test_transcript_content_times_and_lineage(secret, dialog: Path) -> None:  # type: ignore[no-untyped-def]
    r, t = secret.result, secret.transcript
    assert r.language == "en" and r.language_probability > 0.5
    assert wer(EN_TEXT + " " + EN_TEXT_2, r.text, "en") < 0.25
    a_len = 2.0 + float(
        subprocess.run(["soxi", "-D", str(dialog.parent / "a.wav")], capture_output=True, text=True).stdout
    )
    segs = t.metadata["segments"]
    assert segs and all({"start", "end", "text"} <= set(s) for s in segs)
    assert segs[0]["start"] >= 1.4  # leading silence skipped, yet times are the recording's
    radio = [s for s in segs if "radio" in s["text"].lower()]
    assert radio and radio[0]["start"] >= a_len + 5.0  # after the 6 s pause
    words = [w for s in segs for w in s["words"]]
    assert all(w["start"] <= w["end"] for w in words)
    assert [w["start"] for w in words] == sorted(w["start"] for w in words)
    assert len(t.metadata["vad"]) == 2 and r.speech_duration < r.duration - 5
    assert t.kind == "transcript" and t.parents == (secret.audio.id,)
    assert t.label == secret.audio.label and str(t.label) == "S//ALPHA"
    assert t.label.dominates(secret.audio.label)
    assert json.loads(shared_ws_read(secret))["segments"] == segs
    assert "radio contact" in (shared_ws_text(secret) or "").lower()


_WS: list[object] = []


@pytest.fixture(autouse=True)
def _remember_ws(shared_ws) -> None:  # type: ignore[no-untyped-def]
    _WS[:] = [shared_ws]


def shared_ws_read(out) -> bytes:  # type: ignore[no-untyped-def]
    ws = _WS[0]
    return ws.catalog.read_bytes(ws.acting_user("olivia"), out.transcript.id)  # type: ignore[attr-defined]


def shared_ws_text(out) -> str | None:  # type: ignore[no-untyped-def]
    ws = _WS[0]
    return ws.catalog.text(ws.acting_user("olivia"), out.transcript.id)  # type: ignore[attr-defined]


def test_user_below_the_label_cannot_see_the_transcript(shared_ws, secret) -> None:  # type: ignore[no-untyped-def]
    cat = shared_ws.catalog
    alice, bob = shared_ws.acting_user("alice"), shared_ws.acting_user("bob")  # S; S//ALPHA
    for vid in (secret.transcript.id, secret.audio.id):
        with pytest.raises(NotFound) as err:
            cat.get(alice, vid)
        assert err.value.message == f"no such item: {vid}"
        assert cat.get(bob, vid).id == vid
    assert secret.transcript.id not in {v.id for v in cat.list(alice, kind="transcript")}
    assert secret.transcript.id not in {v.id for v in cat.iter_versions(alice)}
    assert secret.transcript.id in {v.id for v in cat.list(bob, kind="transcript")}
    # Asking for it by id is the same as asking for an id that does not exist.
    with pytest.raises(NotFound):
        transcribe_source(shared_ws, alice, secret.audio.id)
    with pytest.raises(NotFound):
        transcribe_source(shared_ws, alice, "zzzzzzzzzzzz")


def test_assistant_search_respects_the_label(shared_ws, secret) -> None:  # type: ignore[no-untyped-def]
    try:
        from casemate.assistant.pipeline import Assistant
    except ImportError as exc:  # pragma: no cover - the assistant is another capability
        pytest.skip(f"assistant not available: {exc}")
    assistant = Assistant(shared_ws)
    admin = shared_ws.acting_user("olivia")
    assistant.index_versions(admin, [secret.transcript])
    hits = assistant.search(shared_ws.acting_user("bob"), "radio contact lost near the bridge")
    mine = [h for h in hits if h.version_id == secret.transcript.id]
    assert mine and {"start", "end"} <= set(mine[0].anchor)  # anchored by time range
    hidden = assistant.search(shared_ws.acting_user("alice"), "radio contact lost near the bridge")
    assert all(h.version_id != secret.transcript.id for h in hidden)


def test_reuse_force_and_label_rules(shared_ws, secret) -> None:  # type: ignore[no-untyped-def]
    admin = shared_ws.acting_user("olivia")
    again = transcribe_source(shared_ws, admin, secret.audio.id)
    assert again.reused and again.transcript.id == secret.transcript.id
    before = len(list(shared_ws.catalog.iter_versions(admin, kind="transcript")))
    with pytest.raises(UsageError):  # a transcript cannot be labelled below its recording
        transcribe_source(shared_ws, admin, secret.audio.id, label="NP", force=True)
    assert len(list(shared_ws.catalog.iter_versions(admin, kind="transcript"))) == before
    higher = transcribe_source(
        shared_ws, admin, secret.audio.id, label="TS//ALPHA", force=True, language="en"
    )
    assert not higher.reused and str(higher.transcript.label) == "TS//ALPHA"
    with pytest.raises(UsageError, match="not a recording"):
        transcribe_source(shared_ws, admin, higher.transcript.id)


def test_silent_recording_gives_an_empty_transcript_that_says_why(shared_ws, speech_dir: Path) -> None:  # type: ignore[no-untyped-def]
    need_tools("sox")
    quiet = speech_dir / "quiet.wav"
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "16000",
            "-c",
            "1",
            "-b",
            "16",
            str(quiet),
            "synth",
            "5",
            "whitenoise",
            "vol",
            "0.001",
        ],
        check=True,
    )
    out = transcribe_source(shared_ws, shared_ws.acting_user("olivia"), str(quiet), label="DR")
    assert out.result.segments == [] and out.transcript.metadata["segments"] == []
    assert "no speech detected" in out.transcript.metadata["empty_reason"]
    assert out.result.text == ""


def test_truncated_flac_keeps_what_it_has_and_says_so(shared_ws, en_wav: Path, speech_dir: Path) -> None:  # type: ignore[no-untyped-def]
    need_tools("sox")
    flac = speech_dir / "full.flac"
    subprocess.run(["sox", str(en_wav), str(flac)], check=True)
    cut = speech_dir / "cut.flac"
    cut.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    out = transcribe_source(shared_ws, shared_ws.acting_user("olivia"), str(cut), label="DR")
    assert any("truncated" in w for w in out.transcript.metadata["warnings"])
    assert "convoy" in out.result.text.lower()


def test_cli_files_errors_and_subtitles(home: Path, en_wav: Path, tmp_path: Path) -> None:
    assert run_cli(home, "init").returncode == 0
    junk = tmp_path / "junk.ogg"
    junk.write_bytes(b"OggS" + os.urandom(5000))
    bad = run_cli(home, "transcribe", str(junk), "--label", "DR")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and str(junk) in bad.stderr
    nolabel = run_cli(home, "transcribe", str(en_wav))
    assert nolabel.returncode == 2 and "--label" in nolabel.stderr
    listing = run_cli(home, "ls", "--json")
    assert listing.returncode == 0 and json.loads(listing.stdout) == []  # nothing stored
    ok = run_cli(
        home,
        "transcribe",
        str(en_wav),
        "--label",
        "DR",
        "--json",
        "--srt",
        "--vtt",
        "--out",
        str(tmp_path),
        "--language",
        "en",
    )
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["language"] == "en" and doc["transcript"]["label"] == "DR"
    assert doc["transcript"]["parents"] == [doc["audio"]["id"]]
    srt = (tmp_path / "en.srt").read_text()
    assert srt.startswith("1\n00:00:0") and "convoy" in srt.lower()
    assert (tmp_path / "en.vtt").read_text().startswith("WEBVTT")
    missing = run_cli(home, "transcribe", "abcdefabcdef")
    assert missing.returncode == 4 and "no such item: abcdefabcdef" in missing.stderr


def test_ingest_hook_transcribes_when_enabled(home: Path, en_wav: Path) -> None:
    assert run_cli(home, "init").returncode == 0
    off = run_cli(home, "ingest", str(en_wav), "--label", "DR")
    assert off.returncode == 0, off.stderr
    assert "transcript" not in run_cli(home, "ls").stdout
    config = home / "config.json"
    conf = json.loads(config.read_text()) if config.exists() else {}
    conf["speech"] = {"transcribe_on_ingest": True}
    config.write_text(json.dumps(conf))
    other = en_wav.parent / "copy.wav"
    other.write_bytes(en_wav.read_bytes())
    on = run_cli(home, "ingest", str(other), "--label", "S")
    assert on.returncode == 0, on.stderr
    listing = run_cli(home, "ls", "--json")
    versions = json.loads(listing.stdout)
    transcripts = [v for v in versions if v["kind"] == "transcript"]
    assert len(transcripts) == 1 and transcripts[0]["label"] == "S"
    assert transcripts[0]["name"] == "copy.wav.transcript.json"
