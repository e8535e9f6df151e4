"""Retrieval evaluation on a SQuAD-format file, in a scratch workspace."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casemate.errors import UsageError


@dataclass(slots=True)
class RetrievalEval:
    questions: int
    paragraphs: int
    recall_at: dict[int, float] = field(default_factory=dict)
    mrr: float = 0.0
    misses: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"questions": self.questions, "paragraphs": self.paragraphs,
                "recall@1": self.recall_at[1], "recall@5": self.recall_at[5], "recall@10": self.recall_at[10],
                "mrr": self.mrr, "misses": self.misses}


def load_squad(path: Path) -> list[tuple[str, str, list[str]]]:
    """(title, context, questions) per paragraph; a clear UsageError naming what is wrong."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path} is not a readable JSON file ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise UsageError(f"{path}: not SQuAD format: expected an object with a 'data' list")
    out = []
    for i, article in enumerate(doc["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise UsageError(f"{path}: data[{i}] has no 'paragraphs' list")
        title = str(article.get("title") or f"article {i}")
        for j, para in enumerate(paragraphs):
            if not isinstance(para, dict) or not isinstance(para.get("context"), str):
                raise UsageError(f"{path}: data[{i}].paragraphs[{j}] has no 'context' text")
            qas = para.get("qas") or []
            if not isinstance(qas, list):
                raise UsageError(f"{path}: data[{i}].paragraphs[{j}].qas must be a list")
            questions = []
            for q in qas:
                if not isinstance(q, dict) or not isinstance(q.get("question"), str) or not q["question"].strip():
                    raise UsageError(f"{path}: data[{i}].paragraphs[{j}].qas has an entry without 'question'")
                questions.append(q["question"])
            out.append((f"{title} §{j + 1}", para["context"], questions))
    if not out:
        raise UsageError(f"{path}: no paragraph to index")
    return out


def evaluate_retrieval(path: Path, ks: tuple[int, ...] = (1, 5, 10)) -> RetrievalEval:
    """Ingest each context as a document into a scratch workspace, then rank them for each question.
    A paragraph's rank is that of its best chunk."""
    from casemate.assistant.pipeline import Assistant
    from casemate.workspace import Workspace

    paragraphs = load_squad(path)
    with tempfile.TemporaryDirectory(prefix="casemate-eval-") as tmp:
        ws = Workspace.init(Path(tmp) / "ws")
        try:
            admin = ws.acting_user("admin")
            ids = []
            versions = []
            for title, context, _ in paragraphs:
                v = ws.catalog.put(admin, context.encode("utf-8"), name=title, kind="document", label="NP",
                                   text=context)
                ids.append(v.id)
                versions.append(v)
            assistant = Assistant(ws)
            assistant.index_versions(admin, versions)
            n_q = 0
            hits_at = dict.fromkeys(ks, 0)
            rr = 0.0
            misses = []
            for (title, _, questions), vid in zip(paragraphs, ids, strict=True):
                for q in questions:
                    n_q += 1
                    ranked = list(dict.fromkeys(h.version_id for h in assistant.retrieve(admin, q, k=50)))
                    rank = ranked.index(vid) + 1 if vid in ranked else None
                    if rank is not None:
                        rr += 1.0 / rank
                        for k in ks:
                            hits_at[k] += rank <= k
                    if rank is None or rank > 1:
                        misses.append({"question": q, "expected": title, "rank": rank})
        finally:
            ws.close()
    if n_q == 0:
        raise UsageError(f"{path}: no question to ask")
    return RetrievalEval(n_q, len(paragraphs), {k: hits_at[k] / n_q for k in ks}, rr / n_q, misses)
