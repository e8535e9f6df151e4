"""Time to first token and decode speed of the default model with four passages, and several
users at once (aggregate answers per minute with llama.cpp parallel slots).

    OMP_NUM_THREADS=1 python benchmarks/bench_assistant_users.py --mode ttft [--threads 1,2] [--reps 12]
    OMP_NUM_THREADS=1 python benchmarks/bench_assistant_users.py --mode users [--users 4] [--slots 1,4]
        [--threads 2] [--max-tokens 64] [--models-dir /tmp/cm-models] [--cnil PATH]

Each request is a CNIL question with four real CNIL paragraphs as sources (the prompt the
assistant builds: system prompt, framing, the gold paragraph and three others). `ttft`: one
request at a time, per thread count: TTFT p50/p95 (first non-empty piece), llama.cpp's own decode
rate and prompt size. `users`: per slot count, one user alone then `--users` at once. One JSON
object per line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from casemate.assistant.engine import XLlamaEngine, resolve_model
from casemate.assistant.prompts import build_messages
from casemate.assistant.search import Hit
from casemate.security.labels import parse_label

CNIL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "assistant" / "cnil-faq-squad.json"
QUESTIONS = [(286, "Pendant combien de temps un employeur peut-il garder les données de suivi du temps de travail ?"),
             (213, "Dans quel délai le médecin doit-il répondre à une demande d'accès au dossier médical ?"),
             (84, "Qui gère le FICP ?"), (322, "Quelle est la durée maximale de conservation des images ?"),
             (203, "Au bout de combien de temps sans ouverture le Dossier Pharmaceutique est-il clos ?"),
             (2, "Quelle loi de 1988 concerne le piratage des systèmes informatisés ?"),
             (463, "Qui est en pratique le responsable de traitement ?"),
             (471, "Un syndic a-t-il le droit d'envoyer en clair les mots de passe de l'extranet ?")]


def _messages(cnil: dict[int, tuple[str, str]], ref: int, question: str) -> list[dict[str, str]]:
    ids = [ref, *[k for k in (99, 203, 153, 67, 84) if k != ref]][:4]  # the gold paragraph and three others
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


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile (p95 of 12 values is the 12th)."""
    ordered = sorted(xs)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))]


def ttft(path: Path, prompts: list[list[dict[str, str]]], threads: int, reps: int, max_tokens: int) -> dict[str, Any]:
    """One request at a time (after one warm-up request), `reps` of them cycling over the prompts."""
    engine = XLlamaEngine(path, n_ctx=4096, threads=threads)
    run(engine, prompts[:1], 4)  # warm-up: first-call costs (mmap faults) are not a user's TTFT
    rows = [run(engine, [prompts[i % len(prompts)]], max_tokens) for i in range(reps)]
    del engine
    first = [r["ttft_median_s"] for r in rows]
    return {"mode": "ttft", "model": path.name, "threads": threads, "reps": reps, "passages": 4,
            "ttft_p50_s": round(statistics.median(first), 2), "ttft_p95_s": round(pct(first, 95), 2),
            "decode_tok_s_median": round(statistics.median(r["decode_tok_s_median"] for r in rows), 2),
            "prompt_tokens_median": statistics.median(r["prompt_tokens_median"] for r in rows),
            "load": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["ttft", "users", "both"], default="both")
    ap.add_argument("--users", type=int, default=4)
    ap.add_argument("--slots", default="1,4")
    ap.add_argument("--threads", default=os.environ.get("OMP_NUM_THREADS", "1"),
                    help="thread count(s), comma-separated (ttft mode measures each)")
    ap.add_argument("--reps", type=int, default=12)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--models-dir", type=Path, default=Path("/tmp/cm-models"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--cnil", type=Path, default=CNIL, help="the CNIL FAQ in SQuAD format (../shared/data/...)")
    args = ap.parse_args()
    doc = json.loads(args.cnil.read_text(encoding="utf-8"))
    cnil = {a["id"]: (a["title"], a["paragraphs"][0]["context"]) for a in doc["data"]}
    path = resolve_model(args.model, args.models_dir)
    thread_counts = [int(t) for t in str(args.threads).split(",")]
    if args.mode in ("ttft", "both"):
        prompts = [_messages(cnil, ref, q) for ref, q in QUESTIONS]
        for threads in thread_counts:
            print(json.dumps(ttft(path, prompts, threads, args.reps, args.max_tokens)), flush=True)
    if args.mode in ("users", "both"):
        prompts = [_messages(cnil, *QUESTIONS[i % len(QUESTIONS)]) for i in range(args.users)]
        for threads in thread_counts:
            for slots in [int(s) for s in args.slots.split(",")]:
                engine = XLlamaEngine(path, n_ctx=2048, threads=threads, parallel=slots)
                run(engine, prompts[:1], 4)  # warm-up
                single = run(engine, prompts[:1], args.max_tokens)
                many = run(engine, prompts, args.max_tokens)
                print(json.dumps({"mode": "users", "model": path.name, "slots": slots, "threads": threads,
                                  "single": single, "concurrent": many,
                                  "speedup": round(many["answers_per_minute"] / single["answers_per_minute"], 2),
                                  "load": os.getloadavg()[0]}), flush=True)
                del engine


if __name__ == "__main__":
    main()
