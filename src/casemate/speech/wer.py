"""Word error rate: word-level Levenshtein distance after normalisation, over reference length."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_NUMBERS = {
    "en": {
        "1": "one",
        "2": "two",
        "3": "three",
        "4": "four",
        "5": "five",
        "6": "six",
        "7": "seven",
        "8": "eight",
        "9": "nine",
        "10": "ten",
    },
    "fr": {
        "1": "un",
        "2": "deux",
        "3": "trois",
        "4": "quatre",
        "5": "cinq",
        "6": "six",
        "7": "sept",
        "8": "huit",
        "9": "neuf",
        "10": "dix",
    },
}


def normalise(text: str, language: str | None = None) -> list[str]:
    """Lower case, accents kept (they are spelling in French), punctuation dropped, elisions split
    (l'aube -> l aube), small numerals spelled out."""
    text = unicodedata.normalize("NFC", text).lower()
    text = text.replace("’", "'")
    text = re.sub(r"[^\w\s']", " ", text)
    text = text.replace("'", " ")
    words = text.split()
    numbers = _NUMBERS.get(language or "", {})
    return [numbers.get(w, w) for w in words]


@dataclass(frozen=True)
class WerResult:
    errors: int  # substitutions + deletions + insertions
    reference_words: int

    @property
    def wer(self) -> float:
        return self.errors / self.reference_words if self.reference_words else float(self.errors > 0)


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def word_errors(reference: str, hypothesis: str, language: str | None = None) -> WerResult:
    ref, hyp = normalise(reference, language), normalise(hypothesis, language)
    return WerResult(edit_distance(ref, hyp), len(ref))


def wer(reference: str, hypothesis: str, language: str | None = None) -> float:
    return word_errors(reference, hypothesis, language).wer
