"""Assistant benchmarks: query embedding, filtered hybrid retrieval over 100,000 chunks, indexing
throughput, and the pipeline's overhead on time to first token and decode speed.

    OMP_NUM_THREADS=1 python benchmarks/bench_assistant.py [--chunks 100000] [--reps 20] [--only ttft,load]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from casemate.assistant.embedder import default_embedder
from casemate.assistant.engine import XLlamaEngine, smollm2_path
from casemate.assistant.pipeline import Assistant
from casemate.assistant.search import ChunkRecord, SearchIndex, VersionInfo
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


def bench_load(n_chunks: int, versions: int = 1000) -> dict[str, float]:
    """Loading the index file (what a server or `casemate search` pays on start).

    After: `IndexStore.load` (BM25 term ids stored at indexing time, postings assembled by numpy).
    Before, measured in the same run on the same file: the previous release's loader (read every row,
    then tokenise every chunk in Python), reproduced by `_legacy_load`.
    """
    from casemate.assistant.chunking import ChunkDraft
    from casemate.assistant.storage import IndexStore

    rng = np.random.default_rng(1)
    vocab = [f"mot{i}" for i in range(20000)]
    labels = [Label(Level(lv), frozenset(c)) for lv in range(4) for c in ([], ["ALPHA"], ["BRAVO"])]
    out: dict[str, float] = {"chunks": n_chunks}
    with tempfile.TemporaryDirectory() as tmp:
        store = IndexStore(Path(tmp) / "assistant.sqlite", 384, "bench")
        per = n_chunks // versions
        t = time.perf_counter()
        for v in range(versions):
            label = labels[v % len(labels)]
            drafts = [ChunkDraft(" ".join(vocab[w] for w in rng.choice(len(vocab), 80)), {"page": i + 1})
                      for i in range(per)]
            vecs = rng.standard_normal((per, 384)).astype(np.float32)
            store.add_version(VersionInfo(f"v{v}", f"a{v}", f"doc {v}", "document", label), drafts, vecs)
        out["write_s_excluding_embeddings"] = time.perf_counter() - t
        loads, legacy = [], []
        for _ in range(3):
            t = time.perf_counter()
            _, index = store.load()
            loads.append(time.perf_counter() - t)
        out["load_s_median_of_3"] = statistics.median(loads)
        t = time.perf_counter()
        old = _legacy_load(store)
        legacy.append(time.perf_counter() - t)
        out["legacy_load_s"] = legacy[0]
        # same answers both ways
        user = User("u", Label(Level.TS, frozenset(["ALPHA", "BRAVO"])))
        q = rng.standard_normal(384).astype(np.float32)
        text = " ".join(vocab[w] for w in rng.choice(len(vocab), 6))
        a = [(h.chunk_id, round(h.score, 9)) for h in index.search(user, q, text, k=10)]
        b = [(h.chunk_id, round(h.score, 9)) for h in old.search(user, q, text, k=10)]
        out["same_results"] = float(a == b)
        store.close()
    return out


def _legacy_load(store: object) -> SearchIndex:
    """The loader before term ids were stored: rows into records, then `SearchIndex` tokenises."""
    import sqlite3

    from casemate.security.labels import parse_label

    con = sqlite3.connect(store.path)  # type: ignore[attr-defined]
    versions = {r[0]: VersionInfo(r[0], r[1], r[2], r[3], parse_label(r[4]))
                for r in con.execute("SELECT version_id, asset_id, name, kind, label FROM versions")}
    rows = con.execute("SELECT id, version_id, label, anchor, text, vector FROM chunks").fetchall()
    con.close()
    records = [ChunkRecord(r[0], versions[r[1]], parse_label(r[2]), json.loads(r[3]), r[4]) for r in rows]
    vectors = np.frombuffer(b"".join(r[5] for r in rows), dtype=np.float32).reshape(len(rows), -1)
    return SearchIndex(records, vectors)


def bench_indexing(ws: object, admin: object, assistant: Assistant) -> dict[str, float]:
    doc = json.loads(DATA.read_text())
    contexts = [p["context"] for p in doc["data"][0]["paragraphs"]]
    text = "\n\n".join(contexts * 6)  # ~25,000 characters
    v = ws.catalog.put(admin, text.encode(), name="ddhc x6", kind="document", label="NP", text=text)  # type: ignore[attr-defined]
    report = assistant.index_versions(admin, [v])  # type: ignore[arg-type]
    return {"index_chars": report.chars, "index_chars_per_s": report.chars / report.seconds}


def _consume(pieces: Iterator[str], t0: float) -> tuple[float, float, float]:
    """(time to first non-empty piece, time of the last one, end), all from t0, in seconds."""
    first = last = None
    for piece in pieces:
        if piece:
            now = time.perf_counter()
            first = now if first is None else first
            last = now
    end = time.perf_counter()
    assert first is not None and last is not None, "no output"
    return first - t0, last - t0, end - t0


def bench_ttft(reps: int, max_tokens: int) -> dict[str, float]:
    """The pipeline (retrieval + prompt + llama.cpp + link filter) against llama.cpp alone.

    Same prompt (the pipeline's own messages), same model, same request (`XLlamaEngine.request`),
    prompt cache off on both sides, order alternated per repetition. Token counts and llama.cpp's
    own prompt/decode times come from its `timings`, so noise in prompt evaluation (the machine is
    shared) can be separated from what the pipeline adds around the engine.
    """
    from casemate.workspace import Workspace

    doc = json.loads(DATA.read_text())
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.init(Path(tmp) / "ws")
        admin = ws.acting_user("admin")
        for i, p in enumerate(doc["data"][0]["paragraphs"]):
            ws.catalog.put(admin, p["context"].encode(), name=f"ddhc {i}", kind="document", label="NP",
                           text=p["context"])
        engine = XLlamaEngine(smollm2_path(), cache_prompt=False)
        assistant = Assistant(ws, engine=engine)
        assistant.index_all(admin)
        out.update(bench_indexing(ws, admin, assistant))
        question = "Comment la contribution commune doit-elle être répartie entre les citoyens ?"
        warm = assistant.ask_stream(admin, question, max_tokens=max_tokens)
        messages = warm.messages
        warm.run()  # loads the model, warms the embedder and the catalog
        rows: list[dict[str, float]] = []

        def pipeline() -> dict[str, float]:
            t0 = time.perf_counter()
            stream = assistant.ask_stream(admin, question, max_tokens=max_tokens)
            pre = time.perf_counter() - t0
            assert stream.messages == messages, "retrieval changed between repetitions"
            first, last, end = _consume(iter(stream), t0)
            return {"pre": pre, "first": first, "last": last, "end": end, **_timings(stream.stats)}

        def direct() -> dict[str, float]:
            stats: dict[str, object] = {}
            t0 = time.perf_counter()
            first, last, end = _consume(engine.stream_chat(messages, max_tokens=max_tokens, temperature=0.0,
                                                            stats=stats), t0)
            return {"first": first, "last": last, "end": end, **_timings(stats)}

        for r in range(reps):
            if r % 2 == 0:
                p, d = pipeline(), direct()
            else:
                d, p = direct(), pipeline()
            rows.append({"p_" + k: v for k, v in p.items()} | {"d_" + k: v for k, v in d.items()})
        ws.close()

    def col(f: object) -> list[float]:
        return [f(r) for r in rows]  # type: ignore[operator]

    ms = 1000.0
    ttft_p = col(lambda r: r["p_first"] * ms)
    ttft_d = col(lambda r: r["d_first"] * ms)
    over_raw = [a - b for a, b in zip(ttft_p, ttft_d, strict=True)]
    # what is not llama.cpp's prompt evaluation, per side, then paired
    over_adj = col(lambda r: (r["p_first"] * ms - r["p_prompt_ms"]) - (r["d_first"] * ms - r["d_prompt_ms"]))
    # decode as the caller sees it: tokens after the first over the time from first to last piece
    dec_p = col(lambda r: (r["p_predicted_n"] - 1) / (r["p_last"] - r["p_first"]))
    dec_d = col(lambda r: (r["d_predicted_n"] - 1) / (r["d_last"] - r["d_first"]))
    ratio = [a / b for a, b in zip(dec_p, dec_d, strict=True)]
    # the same run's caller-side rate over llama.cpp's own decode rate: free of machine noise
    own_p = [a / r["p_predicted_per_second"] for a, r in zip(dec_p, rows, strict=True)]
    own_d = [a / r["d_predicted_per_second"] for a, r in zip(dec_d, rows, strict=True)]
    out.update({
        "reps": reps, "max_tokens": max_tokens,
        "prompt_tokens": statistics.median(col(lambda r: r["d_prompt_n"])),
        "completion_tokens_direct": statistics.median(col(lambda r: r["d_predicted_n"])),
        "completion_tokens_pipeline": statistics.median(col(lambda r: r["p_predicted_n"])),
        "same_token_count_share": sum(r["p_predicted_n"] == r["d_predicted_n"] for r in rows) / len(rows),
        "llama_prompt_ms_median_direct": statistics.median(col(lambda r: r["d_prompt_ms"])),
        "llama_prompt_ms_median_pipeline": statistics.median(col(lambda r: r["p_prompt_ms"])),
        "pipeline_before_engine_median_ms": statistics.median(col(lambda r: r["p_pre"] * ms)),
        "pipeline_before_engine_p95_ms": pct(col(lambda r: r["p_pre"] * ms), 95),
        "ttft_direct_median_ms": statistics.median(ttft_d), "ttft_direct_p95_ms": pct(ttft_d, 95),
        "ttft_pipeline_median_ms": statistics.median(ttft_p), "ttft_pipeline_p95_ms": pct(ttft_p, 95),
        "ttft_overhead_raw_median_ms": statistics.median(over_raw), "ttft_overhead_raw_p95_ms": pct(over_raw, 95),
        "ttft_overhead_outside_prompt_eval_median_ms": statistics.median(over_adj),
        "ttft_overhead_outside_prompt_eval_p95_ms": pct(over_adj, 95),
        "decode_tok_per_s_direct_median": statistics.median(dec_d),
        "decode_tok_per_s_pipeline_median": statistics.median(dec_p),
        "decode_ratio_pipeline_over_direct_median": statistics.median(ratio),
        "decode_ratio_p5": pct(ratio, 5),
        "pipeline_decode_over_llama_own_median": statistics.median(own_p),
        "pipeline_decode_over_llama_own_p5": pct(own_p, 5),
        "direct_decode_over_llama_own_median": statistics.median(own_d),
        "direct_decode_over_llama_own_p5": pct(own_d, 5),
        "llama_decode_tok_per_s_direct_median": statistics.median(col(lambda r: r["d_predicted_per_second"])),
        "llama_decode_tok_per_s_pipeline_median": statistics.median(col(lambda r: r["p_predicted_per_second"])),
    })
    return out


def _timings(stats: dict[str, object]) -> dict[str, float]:
    t = stats.get("timings")
    assert isinstance(t, dict), "llama.cpp reported no timings"
    return {k: float(t[k]) for k in ("prompt_n", "prompt_ms", "predicted_n", "predicted_ms", "predicted_per_second")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--only", default="embedding,retrieval,load,ttft",
                    help="comma-separated parts: embedding, retrieval, load, ttft")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    result: dict[str, object] = {}
    if "embedding" in parts:
        result["query_embedding"] = bench_query_embedding()
    if "retrieval" in parts:
        result["retrieval"] = bench_retrieval(args.chunks)
    if "load" in parts:
        result["load"] = bench_load(args.chunks)
    if "ttft" in parts:
        result["pipeline"] = bench_ttft(args.reps, args.max_tokens)
    print(json.dumps(result, indent=1), flush=True)


if __name__ == "__main__":
    main()
