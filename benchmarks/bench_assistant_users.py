"""Several users at once: aggregate answers per minute with llama.cpp parallel slots, and time to
first token / decode speed of the default model with four passages.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_assistant_users.py [--users 4] [--slots 1,4]
        [--threads 2] [--max-tokens 64] [--models-dir /tmp/cm-models] [--cnil PATH]

Each user asks a different CNIL question with four real CNIL paragraphs as sources (the prompt the
assistant builds). Prints one JSON object per slot count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from pathlib import Path

from casemate.assistant.engine import XLlamaEngine, resolve_model
from casemate.assistant.prompts import build_messages
from casemate.assistant.search import Hit
from casemate.security.labels import parse_label

CNIL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "assistant" / "cnil-faq-squad.json"
QUESTIONS = [(286, "Pendant combien de temps un employeur peut-il garder les données de suivi du temps de travail ?"),
             (213, "Dans quel délai le médecin doit-il répondre à une demande d'accès au dossier médical ?"),
             (84, "Qui gère le FICP ?"), (322, "Quelle est la durée maximale de conservation des images ?")]


def _messages(cnil: dict[int, tuple[str, str]], ref: int, question: str) -> list[dict[str, str]]:
    ids = [ref, *[k for k in (99, 203, 153, 67) if k != ref]][:4]  # the gold paragraph and three others
    hits = [Hit(i, f"v{i}", f"a{i}", cnil[i][0], "document", parse_label("NP"), {}, cnil[i][1], 1.0, 1.0, 1.0)
            for i in ids]
    return build_messages(question, hits, "fr", key="bench")


def run(engine: XLlamaEngine, prompts: list[list[dict[str, str]]], max_tokens: int) -> dict[str, float]:
    results: list[dict[str, float]] = [{} for _ in prompts]

    def one(i: int) -> None:
        t0 = time.perf_counter()
        first = None
        stats: dict[str, object] = {}
        n = 0
        for _ in engine.stream_chat(prompts[i], max_tokens=max_tokens, stats=stats):
            n += 1
            if first is None:
                first = time.perf_counter() - t0
        total = time.perf_counter() - t0
        timings = stats.get("timings") or {}
        results[i] = {"ttft_s": first or total, "total_s": total,
                      "decode_tok_s": float(timings.get("predicted_per_second") or 0.0),  # type: ignore[union-attr]
                      "prompt_tokens": float(timings.get("prompt_n") or 0)}  # type: ignore[union-attr]

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttfts = sorted(r["ttft_s"] for r in results)
    return {"users": len(prompts), "wall_s": round(wall, 2), "answers_per_minute": round(60 * len(prompts) / wall, 2),
            "ttft_median_s": round(statistics.median(ttfts), 2), "ttft_max_s": round(ttfts[-1], 2),
            "decode_tok_s_median": round(statistics.median(r["decode_tok_s"] for r in results), 2),
            "prompt_tokens_median": statistics.median(r["prompt_tokens"] for r in results)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=4)
    ap.add_argument("--slots", default="1,4")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--models-dir", type=Path, default=Path("/tmp/cm-models"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--cnil", type=Path, default=CNIL, help="the CNIL FAQ in SQuAD format (../shared/data/...)")
    args = ap.parse_args()
    doc = json.loads(args.cnil.read_text(encoding="utf-8"))
    cnil = {a["id"]: (a["title"], a["paragraphs"][0]["context"]) for a in doc["data"]}
    path = resolve_model(args.model, args.models_dir)
    prompts = [_messages(cnil, *QUESTIONS[i % len(QUESTIONS)]) for i in range(args.users)]
    for slots in [int(s) for s in args.slots.split(",")]:
        engine = XLlamaEngine(path, n_ctx=2048, threads=args.threads, parallel=slots)
        single = run(engine, prompts[:1], args.max_tokens)
        many = run(engine, prompts, args.max_tokens)
        print(json.dumps({"model": path.name, "slots": slots, "threads": args.threads, "single": single,
                          "concurrent": many,
                          "speedup": round(many["answers_per_minute"] / single["answers_per_minute"], 2)}),
              flush=True)
        del engine


if __name__ == "__main__":
    main()
