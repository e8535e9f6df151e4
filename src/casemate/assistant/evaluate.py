"""Retrieval and answer evaluation on SQuAD-format files, each in a scratch workspace.

A paragraph gives its text inline (`context`) or by reference (`ref`: the `id` of an article of the
corpus file passed as `corpus`, for real data that must not be copied into the repository). A
question may name equivalent paragraphs (`also`: ids whose citation counts as correct). Questions
marked `is_impossible`, and those of a paragraph marked `withheld` (not indexed), must be answered
"not found".
"""

from __future__ import annotations

import json
import re
import statistics
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casemate.errors import UsageError

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    text: str
    answers: tuple[str, ...]
    impossible: bool
    gold: frozenset[str]  # paragraph keys whose citation is right (empty when not answerable)
    order: int = 0  # position in the file: questions are asked in file order


@dataclass(slots=True)
class Paragraph:
    key: str
    title: str
    context: str
    withheld: bool
    questions: list[Question] = field(default_factory=list)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file{what}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path} is not a readable JSON file ({exc})") from None


def load_set(path: Path, corpus: Path | None = None) -> list[Paragraph]:
    """The paragraphs and their questions; a clear UsageError naming what is wrong."""
    doc = _read_json(path, "")
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise UsageError(f"{path}: not SQuAD format: expected an object with a 'data' list")
    refs: dict[str, tuple[str, str]] | None = None
    out: dict[str, Paragraph] = {}
    order = 0
    for i, article in enumerate(doc["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise UsageError(f"{path}: data[{i}] has no 'paragraphs' list")
        title = str(article.get("title") or f"article {i}")
        for j, para in enumerate(paragraphs):
            where = f"{path}: data[{i}].paragraphs[{j}]"
            if not isinstance(para, dict):
                raise UsageError(f"{where} is not an object")
            if "ref" in para:
                if refs is None:
                    refs = _corpus_refs(path, doc, corpus)
                key = str(para["ref"])
                if key not in refs:
                    raise UsageError(f"{where}: ref {key} is not an article id of the corpus file")
                ptitle, context = refs[key]
            elif isinstance(para.get("context"), str):
                key, ptitle, context = f"{i}.{j}", f"{title} §{j + 1}", para["context"]
            else:
                raise UsageError(f"{where} has no 'context' text (or 'ref' to a corpus article)")
            qas = para.get("qas") or []
            if not isinstance(qas, list):
                raise UsageError(f"{where}.qas must be a list")
            target = out.setdefault(key, Paragraph(key, ptitle, context, bool(para.get("withheld"))))
            for n, q in enumerate(qas):
                if not isinstance(q, dict) or not isinstance(q.get("question"), str) or not q["question"].strip():
                    raise UsageError(f"{where}.qas[{n}] has no 'question'")
                answers = tuple(str(a.get("text", "")) for a in q.get("answers") or [] if isinstance(a, dict))
                impossible = bool(q.get("is_impossible")) or target.withheld
                gold = frozenset() if impossible else frozenset([key, *(str(x) for x in q.get("also") or [])])
                target.questions.append(Question(str(q.get("id") or f"{key}/{n}"), q["question"].strip(), answers,
                                                 impossible, gold, order))
                order += 1
    if not out:
        raise UsageError(f"{path}: no paragraph to index")
    return list(out.values())


def _corpus_refs(path: Path, doc: dict[str, Any], corpus: Path | None) -> dict[str, tuple[str, str]]:
    if corpus is None:
        named = doc.get("corpus", "the corpus")
        raise UsageError(f"{path} refers to paragraphs of {named}: pass that SQuAD file with --corpus")
    cdoc = _read_json(corpus, " (the --corpus file)")
    refs = {}
    for article in cdoc.get("data", []) if isinstance(cdoc, dict) else []:
        paras = article.get("paragraphs") or []
        if "id" in article and paras and isinstance(paras[0].get("context"), str):
            refs[str(article["id"])] = (str(article.get("title") or article["id"]), paras[0]["context"])
    if not refs:
        raise UsageError(f"{corpus}: no article with an 'id' and a paragraph 'context'")
    return refs


class _Scratch:
    """A scratch workspace with the paragraphs ingested and indexed (one version per paragraph)."""

    def __init__(self, paragraphs: list[Paragraph], progress: Progress | None, engine: Any = None,
                 embedder: Any = None, extra: list[Paragraph] | None = None) -> None:
        from casemate.assistant.pipeline import Assistant
        from casemate.workspace import Workspace

        self._tmp = tempfile.TemporaryDirectory(prefix="casemate-eval-")
        self.ws = Workspace.init(Path(self._tmp.name) / "ws")
        self.admin = self.ws.acting_user("admin")
        self.key_of: dict[str, str] = {}
        versions = []
        seen: set[str] = set()
        for p in [*paragraphs, *(extra or [])]:
            if p.withheld or p.key in seen:
                continue
            seen.add(p.key)
            v = self.ws.catalog.put(self.admin, p.context.encode("utf-8"), name=p.title, kind="document",
                                    label="NP", text=p.context)
            self.key_of[v.id] = p.key
            versions.append(v)
        self.assistant = Assistant(self.ws, engine=engine, embedder=embedder)
        self.index = self.assistant.index_versions(self.admin, versions, progress)

    def close(self) -> None:
        self.ws.close()
        self._tmp.cleanup()


def _whole_corpus(path: Path, paragraphs: list[Paragraph], corpus: Path | None) -> list[Paragraph]:
    """Every article of the corpus file as a paragraph (the withheld ones stay withheld)."""
    if corpus is None:
        raise UsageError("--whole-corpus needs --corpus")
    withheld = {p.key for p in paragraphs if p.withheld}
    return [Paragraph(k, t, c, k in withheld) for k, (t, c) in _corpus_refs(path, {}, corpus).items()]


# -- retrieval ------------------------------------------------------------------------------------
@dataclass(slots=True)
class RetrievalEval:
    questions: int
    paragraphs: int
    recall_at: dict[int, float] = field(default_factory=dict)
    mrr: float = 0.0
    misses: list[dict[str, Any]] = field(default_factory=list)
    ranking: str = "hybrid"
    index_chars_per_second: float = 0.0
    embedder: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"questions": self.questions, "paragraphs": self.paragraphs, "ranking": self.ranking,
                "recall@1": self.recall_at[1], "recall@5": self.recall_at[5], "recall@10": self.recall_at[10],
                "mrr": self.mrr, "index_chars_per_second": round(self.index_chars_per_second, 1),
                "embedder": self.embedder,
                "misses": self.misses}


def evaluate_retrieval(path: Path, ks: tuple[int, ...] = (1, 5, 10), *, corpus: Path | None = None,
                       rankings: tuple[str, ...] = ("hybrid",), progress: Progress | None = None,
                       index_progress: Progress | None = None, embedder: Any = None,
                       whole_corpus: bool = False) -> list[RetrievalEval]:
    """Rank the paragraphs for each answerable question, once per ranking (hybrid, dense, bm25).
    A paragraph's rank is that of its best chunk. `whole_corpus` indexes every article of
    `corpus` (not withheld) too: the others are distractors."""
    from casemate.assistant.search import Fusion

    paragraphs = load_set(path, corpus)
    questions = [q for p in paragraphs for q in p.questions if not q.impossible]
    if not questions:
        raise UsageError(f"{path}: no question to ask")
    fusions = {name: Fusion.named(name) for name in rankings}
    scratch = _Scratch(paragraphs, index_progress, embedder=embedder,
                       extra=_whole_corpus(path, paragraphs, corpus) if whole_corpus else None)
    try:
        rate = scratch.index.chars / scratch.index.seconds if scratch.index.seconds else 0.0
        results = {name: RetrievalEval(len(questions), len(scratch.key_of), ranking=name, index_chars_per_second=rate,
                                       embedder=scratch.assistant.embedder.name) for name in rankings}
        sums = {name: (dict.fromkeys(ks, 0), [0.0]) for name in rankings}
        for n, q in enumerate(questions, start=1):
            for name, fusion in fusions.items():
                hits = scratch.assistant.retrieve(scratch.admin, q.text, k=50, fusion=fusion)
                ranked = list(dict.fromkeys(scratch.key_of[h.version_id] for h in hits))
                rank = next((i + 1 for i, key in enumerate(ranked) if key in q.gold), None)
                at, rr = sums[name]
                if rank is not None:
                    rr[0] += 1.0 / rank
                    for k in ks:
                        at[k] += rank <= k
                if rank is None or rank > 1:
                    results[name].misses.append({"question": q.text, "id": q.id, "rank": rank})
            if progress is not None:
                progress(n, len(questions))
    finally:
        scratch.close()
    for name, (at, rr) in sums.items():
        results[name].recall_at = {k: at[k] / len(questions) for k in ks}
        results[name].mrr = rr[0] / len(questions)
    return list(results.values())


# -- answers ---------------------------------------------------------------------------------------
_ARTICLES = frozenset("le la les l un une des de du d a au aux et the a an of".split())


def _answer_tokens(text: str) -> list[str]:
    folded = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    folded = re.sub(r"\[\d+\]", " ", folded)
    return [w for w in re.findall(r"\w+", folded) if w not in _ARTICLES]


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD's token F1 (accents folded, articles dropped)."""
    p, r = _answer_tokens(prediction), _answer_tokens(reference)
    if not p or not r:
        return float(p == r)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def token_recall(prediction: str, reference: str) -> float:
    """Share of the reference's tokens found in the prediction."""
    p, r = _answer_tokens(prediction), _answer_tokens(reference)
    if not r:
        return 1.0
    return sum((Counter(p) & Counter(r)).values()) / len(r)


@dataclass(slots=True)
class AnswerEval:
    questions: int
    answerable: int
    unanswerable: int
    f1: float = 0.0
    recall: float = 0.0
    citation_accuracy: float = 0.0
    not_found_accuracy: float = 0.0
    false_not_found: float = 0.0
    seconds_per_answer: float = 0.0
    seconds_p95: float = 0.0
    engine: str = ""
    results: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"questions": self.questions, "answerable": self.answerable, "unanswerable": self.unanswerable,
                "f1": round(self.f1, 4), "answer_recall": round(self.recall, 4),
                "citation_accuracy": round(self.citation_accuracy, 4),
                "not_found_accuracy": round(self.not_found_accuracy, 4),
                "false_not_found": round(self.false_not_found, 4),
                "seconds_per_answer": round(self.seconds_per_answer, 2), "seconds_p95": round(self.seconds_p95, 2),
                "engine": self.engine, "results": self.results}


def evaluate_answers(path: Path, *, corpus: Path | None = None, engine: Any = None, embedder: Any = None,
                     whole_corpus: bool = False, max_tokens: int = 64, progress: Progress | None = None,
                     index_progress: Progress | None = None, log: Path | None = None) -> AnswerEval:
    """Ask every question of FILE (in file order), score the answers against the references.
    `log` receives one JSON line per question as it is answered (long runs can be read while
    they go)."""
    paragraphs = load_set(path, corpus)
    questions = sorted((q for p in paragraphs for q in p.questions), key=lambda q: q.order)
    if not questions:
        raise UsageError(f"{path}: no question to ask")
    extra = _whole_corpus(path, paragraphs, corpus) if whole_corpus else []
    scratch = _Scratch(paragraphs, index_progress, engine=engine, embedder=embedder, extra=extra)
    result = AnswerEval(len(questions), sum(not q.impossible for q in questions),
                        sum(q.impossible for q in questions))
    from casemate.assistant import prompts

    prompts.reproducible_keys(b"casemate-eval-answers")  # a repeatable run (see prompts.reproducible_keys)
    try:
        result.engine = str(getattr(scratch.assistant.engine, "name", ""))
        times, f1s, recalls, cites, nf_ok, false_nf = [], [], [], [], [], []
        for n, q in enumerate(questions, start=1):
            t0 = time.perf_counter()
            answer = scratch.assistant.ask(scratch.admin, q.text, max_tokens=max_tokens)
            seconds = time.perf_counter() - t0
            times.append(seconds)
            row: dict[str, Any] = {"id": q.id, "question": q.text, "answer": answer.text, "draft": answer.draft,
                                   "found": answer.found,
                                   "withdrawn": answer.withdrawn, "seconds": round(seconds, 2),
                                   "expected": list(q.answers), "impossible": q.impossible}
            cited_keys = [scratch.key_of[answer.citations[c - 1].version_id] for c in answer.cited
                          if 0 < c <= len(answer.citations)]
            row["cited"] = cited_keys
            if q.impossible:
                nf_ok.append(not answer.found)
                row["correct"] = not answer.found
            else:
                f1 = max(token_f1(answer.text, a) for a in q.answers) if answer.found and q.answers else 0.0
                rec = max(token_recall(answer.text, a) for a in q.answers) if answer.found and q.answers else 0.0
                f1s.append(f1)
                recalls.append(rec)
                cites.append(any(k in q.gold for k in cited_keys))
                false_nf.append(not answer.found)
                row.update(f1=round(f1, 4), recall=round(rec, 4), gold=sorted(q.gold),
                           citation_ok=cites[-1])
            result.results.append(row)
            if log is not None:
                with open(log, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            if progress is not None:
                progress(n, len(questions))
    finally:
        prompts.reproducible_keys(None)
        scratch.close()
    mean = statistics.fmean
    result.f1 = mean(f1s) if f1s else 0.0
    result.recall = mean(recalls) if recalls else 0.0
    result.citation_accuracy = mean(cites) if cites else 0.0
    result.not_found_accuracy = mean(nf_ok) if nf_ok else 0.0
    result.false_not_found = mean(false_nf) if false_nf else 0.0
    result.seconds_per_answer = statistics.median(times)
    result.seconds_p95 = sorted(times)[max(0, int(round(0.95 * len(times))) - 1)]
    return result
