from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casemate.assistant.chunking import chunk_document, chunk_transcript, format_anchor
from casemate.assistant.safety import StreamNeutraliser, find_active, neutralise

ROOT = Path(__file__).resolve().parents[2]


def test_document_chunks_keep_page_and_heading() -> None:
    text = "# Titre I\nArticle 1\nLes hommes naissent libres.\n\nArticle 2\nLe but.\n\fArticle 3\n" + "Phrase. " * 300
    drafts = chunk_document(text)
    assert drafts[0].anchor == {"page": 1, "heading": "Article 1"} and "naissent" in drafts[0].text
    assert drafts[1].anchor["heading"] == "Article 2"
    tail = [d for d in drafts if d.anchor.get("page") == 2]
    assert len(tail) > 1 and all(d.anchor["heading"] == "Article 3" for d in tail)
    assert all(len(d.text) <= 1000 for d in drafts)
    assert format_anchor(tail[1].anchor) == "p. 2, Article 3, part 2"


def test_transcript_chunks_are_time_ranges() -> None:
    segs = [{"start": i * 5.0, "end": i * 5.0 + 5, "text": f"segment {i} " + "mot " * 30} for i in range(20)]
    drafts = chunk_transcript("ignored", segs)
    assert len(drafts) > 1 and drafts[0].anchor["start"] == 0.0
    assert all(d.anchor["end"] > d.anchor["start"] for d in drafts)
    assert format_anchor({"start": 65, "end": 3725}) == "00:01:05-01:02:05"


def test_links_and_images_are_neutralised_even_when_streamed() -> None:
    s = "Voir ![x](http://evil/x.png) et [ici](https://a.b/c) ou <img src=http://e/x> fin"
    out = neutralise(s)
    assert "](" not in out and "http://" not in out and "<img" not in out
    n = StreamNeutraliser()
    streamed = "".join(n.feed(s[i : i + 2]) for i in range(0, len(s), 2)) + n.flush()
    assert streamed == out


ATOMS = ["[", "]", "(", ")", "!", "<", ">", ":", ".", "/", "http", "https", "HTTP", "www", "h", "t", "p", "s",
         "x", " ", "\n", "img", "a", "w", "javascript", "data", "file", "é", "1", "_", "evil.example"]


@settings(max_examples=2000, deadline=None, database=None)
@given(st.lists(st.sampled_from(ATOMS), max_size=30), st.lists(st.integers(1, 7), min_size=1, max_size=20))
def test_no_remote_link_or_image_survives_any_split(atoms: list[str], sizes: list[int]) -> None:
    """Whatever the model writes and however llama.cpp splits it into tokens, nothing a Markdown or
    HTML client would turn into a link, an image or a tag reaches the user."""
    text = "".join(atoms)
    assert find_active(neutralise(text)) is None
    n, pieces, i = StreamNeutraliser(), [], 0
    for j in range(len(text)):
        if i >= len(text):
            break
        k = sizes[j % len(sizes)]
        pieces.append(n.feed(text[i : i + k]))
        i += k
    pieces.append(n.flush())
    assert find_active("".join(pieces)) is None, pieces


def test_stream_filter_releases_plain_tokens_at_once() -> None:
    """Only what could still become a link waits for the next token (time to first token)."""
    n = StreamNeutraliser()
    assert [n.feed(p) for p in [" Les", " hommes", " naissent", " libres"]] == [" Les", " hommes", " naissent",
                                                                              " libres"]
    assert n.feed(" ht") == " " and n.feed("tp") == "" and n.feed("://e") == "http[:]//e"
    assert n.feed(" [1") == " " and n.feed("]") == "" and n.feed(" et") == "[1] et"


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "casemate.cli", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_index_search_ask(real_corpus: dict[str, Any]) -> None:
    corpus = real_corpus
    home = corpus["ws"].home
    r = _cli(home, "index", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["indexed"] == 0  # incremental: everything indexed already
    r = _cli(home, "--as", "dora", "search", "ravitaillement carburant", "--json", "--k", "3")
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)["results"]
    assert 0 < len(results) <= 3 and {h["label"] for h in results} <= {"NP", "DR"}
    r = _cli(home, "--as", "nina", "ask", "Les hommes naissent-ils libres ?", "--json", "--max-tokens", "16")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["label"] == "NP" and out["citations"][0]["name"] == "ddhc-art1"
    r = _cli(home, "--as", "nina", "ask", "Et l'article 6 ?", "--json", "--max-tokens", "8",
             "--follow-up", out["conversation_id"])
    assert r.returncode == 0, r.stderr
    follow = json.loads(r.stdout)
    conv = corpus["ws"].catalog.get(corpus["ws"].acting_user("nina"), follow["conversation_id"])
    assert out["conversation_id"] in conv.parents
    r = _cli(home, "--as", "nina", "ask", "Et ensuite ?", "--follow-up", "doesnotexist")
    assert r.returncode != 0 and r.stderr.startswith("error: no such item") and "Traceback" not in r.stderr
    r = _cli(home, "--as", "nina", "search", "   ")
    assert r.returncode == 2 and r.stderr.startswith("error: the question is empty") and "Traceback" not in r.stderr


def test_eval_retrieval_on_the_french_set(tmp_path: Path) -> None:
    data = ROOT / "benchmarks" / "data" / "fr_ddhc_squad.json"
    r = _cli(tmp_path / "unused", "eval", "retrieval", str(data), "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["questions"] >= 20 and res["recall@10"] >= 0.8 and 0 < res["mrr"] <= 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [{"paragraphs": [{"qas": []}]}]}')
    r = _cli(tmp_path / "unused", "eval", "retrieval", str(bad))
    assert r.returncode == 2 and "context" in r.stderr
