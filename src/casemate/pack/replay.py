"""Run outputs: metrics JSON, replay JSON lines and a self-contained HTML replay (no network, no CDN).

Every file is written to a temporary name and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from casemate.pack.sim import RunResult

_TEMPLATE = Path(__file__).parent / "replay.html"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replay_lines(result: RunResult) -> str:
    lines = [json.dumps({"type": "header", **result.header}, separators=(",", ":"))]
    lines += [json.dumps({"type": "frame", **f}, separators=(",", ":")) for f in result.frames]
    return "\n".join(lines) + "\n"


def replay_html(result: RunResult) -> str:
    data = {"header": result.header, "frames": result.frames, "metrics": {k: v for k, v in result.metrics.items()
                                                                          if k not in ("coverage_curve", "targets")}}
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return _TEMPLATE.read_text(encoding="utf-8").replace("/*DATA*/null", payload)


def write_outputs(result: RunResult, out_dir: Path) -> dict[str, Path]:
    """metrics.json, replay.jsonl and replay.html in out_dir."""
    out_dir = Path(out_dir)
    paths = {"metrics": out_dir / "metrics.json", "replay": out_dir / "replay.jsonl", "html": out_dir / "replay.html"}
    _atomic_write(paths["metrics"], json.dumps(result.metrics, indent=1) + "\n")
    _atomic_write(paths["replay"], replay_lines(result))
    _atomic_write(paths["html"], replay_html(result))
    return paths


def read_replay(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header: dict[str, Any] = {}
    frames = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.pop("type") == "header":
            header = rec
        else:
            frames.append(rec)
    return header, frames
