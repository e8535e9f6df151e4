"""CI gate on answer quality: the fixed stratified sample of the French CNIL set, real models.

The full set (125 questions) is a benchmark (figures in docs/benchmarks.md); this sample of 8
(5 answerable, 2 the FAQ does not answer, 1 whose paragraph is withheld) keeps the gate's CPU
cost near a minute. A drop below the recorded sample baseline fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from casemate_testdata import shared_data

from casemate.assistant.evaluate import evaluate_answers

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "benchmarks" / "data" / "fr_cnil_answers_sample.json"
BASELINE = ROOT / "benchmarks" / "data" / "answers_baseline.json"


@pytest.mark.slow
def test_answer_quality_does_not_drop_on_the_sample() -> None:
    corpus = shared_data("assistant", "cnil-faq-squad.json")
    result = evaluate_answers(SAMPLE, corpus=corpus)
    base = json.loads(BASELINE.read_text(encoding="utf-8"))["sample"]
    assert result.questions == 8
    assert result.not_found_accuracy >= base["not_found_accuracy"], result.results
    assert result.f1 >= base["f1"] - 0.02, result.results  # 0.02: thread-count rounding in llama.cpp
    assert result.citation_accuracy >= base["citation_accuracy"], result.results
