"""Assistant benchmarks: query embedding, filtered hybrid retrieval over 100,000 chunks, indexing
throughput, and the pipeline's overhead on time to first token and decode speed.

    OMP_NUM_THREADS=1 python benchmarks/bench_assistant.py [--chunks 100000] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from casemate.assistant.embedder import default_embedder
from casemate.assistant.engine import XLlamaEngine, default_gguf_path
from casemate.assistant.index import ChunkRecord, SearchIndex, VersionInfo
from casemate.assistant.pipeline import Assistant
from casemate.security.labels import Label, Level
from casemate.security.policy import User

DATA = Path(__file__).parent / "data" / "fr_ddhc_squad.json"


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.array(xs), p))


def bench_query_embedding(n: int = 50) -> dict[str, float]:
    emb = default_embedder()
    qs = [f"Quelle est la règle numéro {i} sur la liberté d'expression ?" for i in range(n)]
    emb.embed_query("warm up")
    ts = []
    for q in qs:
        t = time.perf_counter()
        emb.embed_query(q)
        ts.append((time.perf_counter() - t) * 1000)
    return {"median_ms": statistics.median(ts), "p95_ms": pct(ts, 95)}


def bench_retrieval(n_chunks: int, n_queries: int = 200) -> dict[str, float]:
    rng = np.random.default_rng(0)
    vocab = [f"mot{i}" for i in range(20000)]
    labels = [Label(Level(lv), frozenset(c)) for lv in range(4) for c in ([], ["ALPHA"], ["BRAVO"], ["ALPHA", "BRAVO"])]
    records = []
    for i in range(n_chunks):
        words = rng.choice(len(vocab), 80)
        label = labels[i % len(labels)]
        records.append(ChunkRecord(i, VersionInfo(f"v{i}", f"a{i}", f"d{i}", "document", label), label, {},
                                   " ".join(vocab[w] for w in words)))
    vecs = rng.standard_normal((n_chunks, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    t = time.perf_counter()
    index = SearchIndex(records, vecs)
    build_s = time.perf_counter() - t
    out: dict[str, float] = {"chunks": n_chunks, "build_s": build_s}
    for name, clearance in (("TS//ALPHA/BRAVO (100%)", labels[-1]), ("S (50%)", Label(Level.S)),
                            ("NP (6%)", Label(Level.NP))):
        user = User("u", clearance)
        ts = []
        for _ in range(n_queries):
            q = rng.standard_normal(384).astype(np.float32)
            q /= np.linalg.norm(q)
            text = " ".join(vocab[w] for w in rng.choice(len(vocab), 6))
            t = time.perf_counter()
            index.search(user, q, text, k=10)
            ts.append((time.perf_counter() - t) * 1000)
        out[f"{name} median_ms"] = statistics.median(ts)
        out[f"{name} p95_ms"] = pct(ts, 95)
    return out


def bench_indexing_and_ttft(reps: int) -> dict[str, float]:
    from casemate.workspace import Workspace

    doc = json.loads(DATA.read_text())
    contexts = [p["context"] for p in doc["data"][0]["paragraphs"]]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.init(Path(tmp) / "ws")
        admin = ws.acting_user("admin")
        text = "\n\n".join(contexts * 6)  # ~25,000 characters
        v = ws.catalog.put(admin, text.encode(), name="ddhc x6", kind="document", label="NP", text=text)
        engine = XLlamaEngine(default_gguf_path())
        assistant = Assistant(ws, engine=engine)
        report = assistant.index_versions(admin, [v])
        out["index_chars"] = report.chars
        out["index_chars_per_s"] = report.chars / report.seconds
        question = "Comment l'impôt doit-il être réparti entre les citoyens ?"
        direct_ttft, pipe_ttft, direct_tps, pipe_tps = [], [], [], []
        for _ in range(reps):
            stream = assistant.ask_stream(admin, question, max_tokens=64)
            messages = stream.messages
            t0 = time.perf_counter()
            stream = assistant.ask_stream(admin, question, max_tokens=64)  # timed: retrieval + prompt
            first = None
            n = 0
            for _piece in stream:
                n += 1
                if first is None:
                    first = time.perf_counter()
            end = time.perf_counter()
            pipe_ttft.append((first - t0) * 1000)
            pipe_tps.append(n / (end - first) if end > first else 0.0)
            # the engine alone, same prompt and model
            t0 = time.perf_counter()
            first = None
            n = 0
            for _piece in engine.stream_chat(messages, max_tokens=64):
                n += 1
                if first is None:
                    first = time.perf_counter()
            end = time.perf_counter()
            direct_ttft.append((first - t0) * 1000)
            direct_tps.append(n / (end - first) if end > first else 0.0)
        over = [p - d for p, d in zip(pipe_ttft, direct_ttft, strict=True)]
        out.update({
            "ttft_direct_median_ms": statistics.median(direct_ttft),
            "ttft_pipeline_median_ms": statistics.median(pipe_ttft),
            "ttft_overhead_median_ms": statistics.median(over),
            "ttft_overhead_p95_ms": pct(over, 95),
            "decode_pieces_per_s_direct": statistics.median(direct_tps),
            "decode_pieces_per_s_pipeline": statistics.median(pipe_tps),
        })
        ws.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = {"query_embedding": bench_query_embedding(), "retrieval": bench_retrieval(args.chunks),
              "pipeline": bench_indexing_and_ttft(args.reps)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
