"""`casemate transcribe`: recordings (catalog ids or files) to stored, labelled transcripts."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from casemate.cli import state_of
from casemate.errors import CasemateError, UsageError

if TYPE_CHECKING:  # torch-free start-up: the speech stack loads only when a command runs
    from casemate.security.policy import User
    from casemate.speech.transcribe import TranscribeOutcome
    from casemate.workspace import Workspace


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _summary(out: TranscribeOutcome) -> dict[str, Any]:
    r = out.result
    return {
        "audio": out.audio.to_json(),
        "transcript": {k: v for k, v in out.transcript.to_json().items() if k != "metadata"},
        "reused": out.reused,
        "language": r.language,
        "language_probability": r.language_probability,
        "duration": r.duration,
        "speech_duration": r.speech_duration,
        "text": r.text,
        "segments": out.transcript.metadata.get("segments", []),
        "vad": out.transcript.metadata.get("vad", []),
        "warnings": r.warnings,
        "empty_reason": r.empty_reason,
    }


def _with_bar(
    source: str, ws: Workspace, user: User, language: str, model: str | None, label: str | None, force: bool
) -> TranscribeOutcome:
    """Transcribe with a progress bar on the terminal (long recordings take minutes)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from casemate.speech.transcribe import transcribe_source

    with Progress(
        TextColumn(f"transcribe {Path(source).name}"), BarColumn(), TimeRemainingColumn(), transient=True
    ) as bar:
        task = bar.add_task("transcribe", total=None)

        def update(done: float, total: float | None) -> None:
            bar.update(task, completed=done, total=total)

        return transcribe_source(
            ws, user, source, language=language, model=model, label=label, force=force, progress=update
        )


@click.command("transcribe")
@click.argument("audio", nargs=-1, required=True)
@click.option(
    "--language",
    type=click.Choice(["auto", "fr", "en"]),
    default=None,
    help="Spoken language (default: speech.language in config, else auto-detect).",
)
@click.option("--label", "-l", default=None, help="Label for a file given by path (required then), e.g. DR.")
@click.option(
    "--model", default=None, metavar="PATH", help="A CTranslate2 Whisper folder (default: whisper-base)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the transcripts as JSON.")
@click.option("--srt", is_flag=True, help="Also write an .srt subtitle file per recording.")
@click.option("--vtt", is_flag=True, help="Also write a WebVTT .vtt subtitle file per recording.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=".",
    show_default=True,
    help="Folder for --srt/--vtt files.",
)
@click.option("--force", is_flag=True, help="Transcribe again even if a transcript exists.")
@click.pass_context
def transcribe_cmd(
    ctx: click.Context,
    audio: tuple[str, ...],
    language: str | None,
    label: str | None,
    model: str | None,
    as_json: bool,
    srt: bool,
    vtt: bool,
    out_dir: str,
    force: bool,
) -> None:
    """Transcribe recordings: catalog version ids, or files (stored with --label).

    Each transcript is stored as a version derived from its recording, labelled at least as high.
    """
    from casemate.fileutil import write_atomic
    from casemate.speech.formats import to_srt, to_vtt
    from casemate.speech.transcribe import transcribe_source

    if label:
        from casemate.security.labels import parse_label

        parse_label(label)
    state = state_of(ctx)
    ws = state.workspace()
    user = state.user()
    language = language or ws.config.speech.language or "auto"
    results: list[dict[str, Any]] = []
    failed = 0
    show_bar = sys.stderr.isatty() and not as_json
    for source in audio:
        try:
            if show_bar:
                out = _with_bar(source, ws, user, language, model, label, force)
            else:
                out = transcribe_source(
                    ws, user, source, language=language, model=model, label=label, force=force
                )
        except CasemateError as exc:
            if len(audio) == 1:
                raise
            failed += 1
            click.echo(f"error: {source}: {exc.message}", err=True)
            continue
        segments = out.transcript.metadata.get("segments", [])
        written = []
        for flag, suffix, render in ((srt, ".srt", to_srt), (vtt, ".vtt", to_vtt)):
            if flag:
                target = Path(out_dir) / (Path(out.audio.name).stem + suffix)
                write_atomic(target, render(segments))
                written.append(str(target))
        if as_json:
            results.append({**_summary(out), "exported": written})
            continue
        r = out.result
        lang = f"{r.language} ({r.language_probability:.2f})" if r.language else "-"
        click.echo(
            f"{out.transcript.id}  {out.audio.name}  [{out.transcript.label}]  language {lang}  "
            f"{r.duration:.1f} s audio, {r.speech_duration:.1f} s speech, {len(r.segments)} segments"
            + ("  (existing transcript; --force to redo)" if out.reused else "")
        )
        for w in r.warnings:
            click.echo(f"  warning: {w}", err=True)
        if r.empty_reason:
            click.echo(f"  empty transcript: {r.empty_reason}")
        for seg in r.segments:
            click.echo(f"  [{_clock(seg.start)}–{_clock(seg.end)}] {seg.text}")
        for path in written:
            click.echo(f"  wrote {path}")
    if as_json:
        click.echo(
            json.dumps(
                results if len(audio) > 1 else (results[0] if results else None), ensure_ascii=False, indent=2
            )
        )
    if failed:
        raise UsageError(f"{failed} of {len(audio)} recordings failed (see above)")
