"""Ingest hook: transcribe new recordings when `speech.transcribe_on_ingest` is set in config.json."""

from __future__ import annotations

import sys
from typing import Any

from casemate.errors import CasemateError, UsageError
from casemate.security import User
from casemate.workspace import Workspace


def after_ingest(ws: Workspace, user: User, versions: list[Any]) -> list[Any]:
    """Transcribe each ingested audio (or video) version; other kinds are ignored, cheaply.

    Returns the new transcripts, which the hooks after this one (the assistant's indexer) receive
    too. One bad recording does not stop the others: failures are audited and reported together.
    """
    conf = ws.config.speech
    if not conf.transcribe_on_ingest:
        return []
    from casemate.speech.transcribe import is_transcribable, transcribe_source

    todo = [v for v in versions if is_transcribable(v)]
    failures: list[str] = []
    created: list[Any] = []
    for v in todo:
        try:
            out = transcribe_source(ws, user, v.id, language=conf.language)
        except CasemateError as exc:
            failures.append(f"{v.name} ({v.id}): {exc.message}")
            ws.audit.record(user.name, "speech.transcribe_failed", v.id, {"error": exc.message})
            continue
        if not out.reused:
            created.append(out.transcript)
            print(f"transcribed {v.name} -> {out.transcript.id}", file=sys.stderr)
    if failures:
        raise UsageError("transcription failed for " + "; ".join(failures))
    return created
