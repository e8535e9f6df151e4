"""The fixed, stratified sample of the French answer set that the CI gate runs.

Every 21st answerable question (5 of 105), every 7th off-corpus one (2 of 14) and the first
withheld one (1 of 6), in file order: the sample is a pure function of the full set, so it changes
only when the set does. Run: python benchmarks/make_answer_sample.py
"""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).parent / "data"


def main() -> None:
    doc = json.loads((DATA / "fr_cnil_answers.json").read_text(encoding="utf-8"))
    counters = {"answerable": 0, "impossible": 0, "withheld": 0}
    step = {"answerable": 21, "impossible": 7, "withheld": 6}
    data = []
    for article in doc["data"]:
        paragraphs = []
        for para in article["paragraphs"]:
            kept = []
            for q in para["qas"]:
                kind = "withheld" if para.get("withheld") else "impossible" if q.get("is_impossible") else "answerable"
                counters[kind] += 1
                if (counters[kind] - 1) % step[kind] == 0:
                    kept.append(q)
            if kept:
                paragraphs.append({**para, "qas": kept})
        if paragraphs:
            data.append({**article, "paragraphs": paragraphs})
    out = {**doc, "note": doc["note"] + " CI sample: see benchmarks/make_answer_sample.py.", "data": data}
    (DATA / "fr_cnil_answers_sample.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n",
                                                     encoding="utf-8")


if __name__ == "__main__":
    main()
