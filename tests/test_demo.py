"""`casemate demo`, the main job, as a person runs it."""

import subprocess
import sys


def test_demo_runs_end_to_end(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "casemate.cli", "demo", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "nora   (NP        ) sees 2" in text
    assert "dana   (DR        ) sees 3" in text
    assert "alex   (TS//ALPHA ) sees 5" in text
    assert "admin  (TS        ) sees 4" in text  # TS without ALPHA: the compartment still hides one
    assert text.count("-> error: no such item:") == 2
    assert "dana  answer labelled DR" in text and "sam   answer labelled S" in text
    # each user's answer is right and cited (measured: 9 of 9 runs for each question, docs/assistant.md)
    answers = {line.split()[0]: line for line in text.splitlines() if " answer labelled " in line}
    assert "parking nord" in answers["nora"].lower() and "[1]" in answers["nora"], answers
    assert "deux navires" in answers["dana"] and "deux navires" in answers["sam"], answers
    assert ("trois" in answers["alex"].lower() or " 3 " in answers["alex"]) and "[1]" in answers["alex"], answers
    assert "GRAYWHALE" not in text  # the TS//ALPHA document never reaches these readers
    assert "Audit log: intact" in text and "after close: intact" in text
    assert "Traceback" not in out.stderr
