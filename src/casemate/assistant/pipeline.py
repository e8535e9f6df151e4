"""Question -> clearance-filtered retrieval -> framed prompt -> streamed, cited, labelled answer.

The user's clearance is applied inside `SearchIndex.search` before anything is scored; every hit is
then re-checked against the catalog (`catalog.get`, which asks `can_read`), so a version removed
or relabelled since indexing drops out too. Only those chunks reach the prompt; the answer's label
is the least upper bound of their labels. Conversations go to the catalog, each question to the
audit log (ids and label; the question itself only as a hash, since the log's readers may be
cleared lower than the question's content).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from casemate.assistant import prompts
from casemate.assistant.chunking import format_anchor
from casemate.assistant.config import section
from casemate.assistant.embedder import Embedder, embedder_from_settings
from casemate.assistant.engine import ChatEngine, engine_from_settings
from casemate.assistant.indexer import INDEXED_KINDS, Indexer, IndexReport, Progress
from casemate.assistant.prompts import NOT_FOUND, build_messages
from casemate.assistant.safety import StreamNeutraliser
from casemate.assistant.search import Fusion, Hit, SearchIndex
from casemate.assistant.storage import IndexStore
from casemate.assistant.textproc import STEM_LETTERS, language_of, tokenize
from casemate.errors import NotFound, UsageError
from casemate.security.labels import BOTTOM, Label, format_label, lub
from casemate.security.policy import User, can_read
from casemate.workspace import Workspace

__all__ = ["INDEXED_KINDS", "NOT_FOUND", "Answer", "AnswerStream", "Assistant", "Citation", "IndexReport",
           "MAX_K", "MAX_QUERY_CHARS"]

MAX_QUERY_CHARS = 2000
MAX_K = 50
# measured on benchmarks/data/fr_cnil_answers.json: the paragraph holding the answer is among the
# first two retrieved for every answerable question (first for 93 %), and each extra source costs
# ~200 prompt tokens, i.e. seconds per answer on one core (docs/benchmarks.md)
CONTEXT_CHUNKS = 2
MAX_HISTORY = 8  # earlier messages kept in the prompt
# e5 cosine similarities sit in a narrow band; below this a chunk with no shared content word is
# treated as unrelated (calibrated on benchmarks/data/fr_legal_squad.json: see docs/assistant.md).
DENSE_MIN = 0.83
# A question none of whose retrieved chunks comes this close (e5 cosine) is about something the
# readable documents do not cover: "not found" without a model call. Measured on
# benchmarks/data/fr_cnil_answers.json (docs/assistant.md): every answerable question has a chunk at
# 0.8397 or more; 5 of the 14 questions the FAQ does not answer stay under 0.835. Keyed by the
# embedder's name (an embedder may carry its own `question_min_cosine`); unknown embedders: no gate.
QUESTION_MIN_COSINE = {"multilingual-e5-small": 0.835}
# Share of the question's content words (weighted by their IDF over the reader's index, matched on
# their first five letters) that the sources given to the model hold. Below it, the sources are about
# something else ("the capital of Australia", or a question whose own sheet is missing while its
# neighbours are there): "not found" without a model call. Measured on
# benchmarks/data/fr_cnil_answers.json (docs/assistant.md): 0.33 takes 4 more of its 20 unanswerable
# questions and 2 of its 105 answerable ones (one of them
# answered right before, one withdrawn anyway).
QUESTION_COVERAGE_MIN = 0.33


@dataclass(frozen=True, slots=True)
class Citation:
    """A source given to the model, as shown to the user."""

    n: int
    asset_id: str
    version_id: str
    name: str
    anchor: dict[str, Any]
    snippet: str
    label: Label

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "asset_id": self.asset_id,
            "version_id": self.version_id,
            "name": self.name,
            "anchor": self.anchor,
            "anchor_text": format_anchor(self.anchor),
            "snippet": self.snippet,
            "label": format_label(self.label),
        }


@dataclass(slots=True)
class Answer:
    question: str
    text: str
    citations: list[Citation]
    label: Label
    found: bool
    language: str
    retrieved: list[str]
    conversation_id: str | None = None
    cited: list[int] = field(default_factory=list)  # the source numbers the text cites
    withdrawn: bool = False  # the model's text failed the check against the sources
    draft: str = ""  # what the model wrote, before the check (evaluations read it; not in to_json)

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "label": format_label(self.label),
            "label_display": self.label.display,
            "found": self.found,
            "language": self.language,
            "citations": [c.to_json() for c in self.citations],
            "cited": self.cited,
            "withdrawn": self.withdrawn,
            "conversation_id": self.conversation_id,
        }


def snippet_of(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


class AnswerStream:
    """An answer being generated: sources, citations and label are known before the first token.

    Iterate it for the (neutralised) text pieces as the model writes them; when it is exhausted,
    `answer` holds the checked, stored and audited result. Its text may differ from the streamed
    pieces (echoed framing removed, unknown [n] dropped, a refusal or an answer not supported by the
    sources replaced): `answer.text` is what is kept, and what a client should show at the end.
    """

    def __init__(self, assistant: Assistant, user: User, question: str, hits: list[Hit], language: str,
                 history: Sequence[dict[str, str]], max_tokens: int, previous: Any = None) -> None:
        self._assistant = assistant
        self.user = user
        self.question = question
        self.hits = hits
        self.language = language
        self.found = bool(hits)
        self.history = [{"role": m["role"], "content": m["content"]} for m in history]
        self.previous = previous  # the conversation version this turn follows, if any
        # high-water mark: the earlier turns are in the prompt too, so their label carries over
        self.label: Label = lub([*(h.label for h in hits), *([previous.label] if previous else [])] or [BOTTOM])
        self.citations = [
            Citation(n, h.asset_id, h.version_id, h.name, h.anchor, snippet_of(h.text), h.label)
            for n, h in enumerate(hits, start=1)
        ]
        self.messages = build_messages(question, hits, language, history) if hits else []
        self._max_tokens = max_tokens
        self.stats: dict[str, Any] = {}  # the engine's own token counts and timings, once done
        self.answer: Answer | None = None
        self.draft = ""
        self._iterated = False

    def __iter__(self) -> Iterator[str]:
        if self._iterated:
            raise UsageError("an answer stream can be read once")
        self._iterated = True
        if not self.found:
            yield NOT_FOUND[self.language]
            self.answer = self._assistant._finish(self, prompts.Checked(NOT_FOUND[self.language], (), True,
                                                                         False, 0.0))
            return
        pieces: list[str] = []
        neutral = StreamNeutraliser()
        engine = self._assistant.engine
        for raw in engine.stream_chat(self.messages, max_tokens=self._max_tokens, temperature=0.0,
                                      stats=self.stats):
            out = neutral.feed(raw)
            if out:
                pieces.append(out)
                yield out
        tail = neutral.flush()
        if tail:
            pieces.append(tail)
            yield tail
        self.draft = "".join(pieces)
        produced = (self.stats.get("usage") or {}).get("completion_tokens")
        cut = isinstance(produced, int) and produced >= self._max_tokens
        checked = prompts.check_answer(self.draft, self.question, self.hits, self.language, cut=cut)
        self.answer = self._assistant._finish(self, checked)

    def run(self) -> Answer:
        for _ in self:
            pass
        assert self.answer is not None
        return self.answer


class Assistant:
    """The assistant over one workspace. Thread-safe; share one per process."""

    def __init__(self, ws: Workspace, embedder: Embedder | None = None, engine: ChatEngine | None = None) -> None:
        self.ws = ws
        self.settings = section(ws, "assistant")
        self.embedder = embedder or embedder_from_settings(self.settings)
        self._engine = engine
        self.store = IndexStore(Path(ws.home) / "index" / "assistant.sqlite", self.embedder.dim, self.embedder.name)
        self.fusion = Fusion.named(str(self.settings.get("ranking", "hybrid")))
        self.indexer = Indexer(ws.catalog, self.store, self.embedder)
        self._snapshot: tuple[int, SearchIndex] | None = None
        self._snap_lock = threading.Lock()

    @property
    def engine(self) -> ChatEngine:
        if self._engine is None:
            self._engine = engine_from_settings(self.settings.get("engine") or {}, Path(self.ws.models_dir))
        return self._engine

    # -- indexing ----------------------------------------------------------------------------
    def index_versions(self, user: User, versions: Sequence[Any], progress: Progress | None = None) -> IndexReport:
        """Index the given catalog versions the user may read (documents, transcripts) not yet indexed."""
        return self.indexer.index_versions(user, versions, progress)

    def index_all(self, user: User, progress: Progress | None = None) -> IndexReport:
        """Incremental: index every readable document/transcript version not indexed yet."""
        return self.indexer.index_all(user, progress)

    # -- retrieval -----------------------------------------------------------------------------
    def search_index(self) -> SearchIndex:
        """The in-memory index, reloaded when another process (or thread) changed the file."""
        with self._snap_lock:
            gen = self.store.generation()
            if self._snapshot is None or self._snapshot[0] != gen:
                self._snapshot = self.store.load()
            return self._snapshot[1]

    def retrieve(self, user: User, query: str, k: int = 10, fusion: Fusion | None = None) -> list[Hit]:
        """Readable chunks for `query`, best first. Unreadable ones never leave the index."""
        query = _check_query(query)
        if not 1 <= k <= MAX_K:
            raise UsageError(f"k must be between 1 and {MAX_K}, not {k}")
        index = self.search_index()
        qv = self.embedder.embed_query(query) if len(index) else None
        hits = index.search(user, qv, query, k=k, fusion=fusion or self.fusion)
        return self._recheck(user, hits)

    def _recheck(self, user: User, hits: list[Hit]) -> list[Hit]:
        ok: dict[str, bool] = {}
        out = []
        for h in hits:
            if h.version_id not in ok:
                try:
                    v = self.ws.catalog.get(user, h.version_id, audit=False)
                    ok[h.version_id] = can_read(user, v.label) and v.label == h.label
                except NotFound:
                    ok[h.version_id] = False
            if ok[h.version_id]:
                out.append(h)
        return out

    def search(self, user: User, query: str, k: int = 10) -> list[Hit]:
        hits = self.retrieve(user, query, k)
        self._audit(user, "assistant.search", None, {
            "query_sha256": hashlib.sha256(query.encode()).hexdigest(),
            "retrieved": [f"{h.version_id}#{h.chunk_id}" for h in hits],
        })
        return hits

    # -- answering -----------------------------------------------------------------------------
    def ask_stream(self, user: User, question: str, *, history: Sequence[dict[str, str]] = (),
                   max_tokens: int = 256, conversation_id: str | None = None) -> AnswerStream:
        """Retrieve and frame; generation starts when the stream is iterated.

        `conversation_id` (a conversation version the user can read) makes this turn its follow-up:
        the new version gets it as a parent and a label at least as high; without `history`, the
        earlier turns are taken from it.
        """
        question = _check_query(question)
        previous = None
        if conversation_id is not None:
            previous, earlier = self._previous_turns(user, conversation_id)
            history = history or earlier
        retrieved = self.retrieve(user, question, k=10)
        floor = self.question_min_cosine()
        if retrieved and max(h.dense for h in retrieved) < floor:
            retrieved = []
        hits = [h for h in retrieved if _relevant(h)][:CONTEXT_CHUNKS]
        if hits and self.question_coverage(user, question, hits) < QUESTION_COVERAGE_MIN:
            hits = []
        return AnswerStream(self, user, question, hits, language_of(question), list(history)[-MAX_HISTORY:],
                            max_tokens, previous)

    def _previous_turns(self, user: User, conversation_id: str) -> tuple[Any, list[dict[str, str]]]:
        version = self.ws.catalog.get(user, conversation_id)  # NotFound if absent or unreadable
        if version.kind != "conversation":
            raise UsageError(f"{conversation_id} is a {version.kind}, not a conversation: pass the "
                             "conversation_id an earlier answer returned")
        record = json.loads(self.ws.catalog.read_bytes(user, conversation_id))
        messages = [{"role": m["role"], "content": m["content"]} for m in record.get("messages", [])
                    if isinstance(m, dict) and m.get("role") in ("user", "assistant")
                    and isinstance(m.get("content"), str)]
        return version, messages

    def question_coverage(self, user: User, question: str, hits: Sequence[Hit]) -> float:
        """How much of the question the given sources speak of: the IDF-weighted share of its
        content words (three letters or more) found in them, a word matching on its first five
        letters ("photocopier" / "photocopie"). IDFs come from the chunks `user` may read only."""
        words = [w for w in dict.fromkeys(tokenize(question)) if len(w) >= 3]
        if not words:
            return 1.0
        idf = self.search_index().idf(user, words)
        held = set().union(*(tokenize(h.text) for h in hits))
        stems = {w[:STEM_LETTERS] for w in held}
        total = sum(idf.values())
        return sum(v for w, v in idf.items() if w in held or w[:STEM_LETTERS] in stems) / total if total else 1.0

    def question_min_cosine(self) -> float:
        """The dense score under which no retrieved chunk is taken to be about the question."""
        own = getattr(self.embedder, "question_min_cosine", None)
        if own is not None:
            return float(own)
        name = str(getattr(self.embedder, "name", ""))
        return next((v for prefix, v in QUESTION_MIN_COSINE.items() if name.startswith(prefix)), 0.0)

    def ask(self, user: User, question: str, **kwargs: Any) -> Answer:
        return self.ask_stream(user, question, **kwargs).run()

    def _finish(self, stream: AnswerStream, checked: prompts.Checked) -> Answer:
        found = stream.found and not checked.refused and not checked.withdrawn
        text = checked.text
        answer = Answer(stream.question, text, stream.citations, stream.label, found, stream.language,
                        [f"{h.version_id}#{h.chunk_id}" for h in stream.hits], cited=list(checked.cited),
                        withdrawn=checked.withdrawn, draft=stream.draft)
        record = {
            "format": "casemate-conversation/1",
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "user": stream.user.name,
            "messages": [*stream.history, {"role": "user", "content": stream.question},
                         {"role": "assistant", "content": text}],
            "follows": stream.previous.id if stream.previous is not None else None,
            "answer": answer.to_json(),
            "engine": getattr(self._engine, "name", None) if stream.found else None,
        }
        parents = tuple(dict.fromkeys([*(c.version_id for c in stream.citations),
                                       *([stream.previous.id] if stream.previous is not None else [])]))
        with self.ws.transaction():  # the conversation and its audit entry, together or not at all
            version = self.ws.catalog.put(
                stream.user, json.dumps(record, ensure_ascii=False, indent=1).encode(),
                name=f"conversation {record['created_at']}", kind="conversation",
                label=stream.label, parents=parents, text=f"{stream.question}\n\n{text}",
                metadata={"found": found, "citations": len(stream.citations)},
            )
            answer.conversation_id = version.id
            self._audit(stream.user, "assistant.ask", version.id, {
                "question_sha256": hashlib.sha256(stream.question.encode()).hexdigest(),
                "retrieved": answer.retrieved,
                "label": format_label(stream.label),
                "found": found,
                "withdrawn": checked.withdrawn,
                "follows": stream.previous.id if stream.previous is not None else None,
            })
        return answer

    def _audit(self, user: User, action: str, target: str | None, detail: dict[str, Any]) -> None:
        self.ws.audit.record(user.name, action, target, detail)


def _relevant(hit: Hit) -> bool:
    return hit.bm25 > 0.0 or hit.dense >= DENSE_MIN


def _check_query(query: str) -> str:
    if not isinstance(query, str) or not query.strip():
        raise UsageError("the question is empty: type a question or search words")
    query = query.strip()
    if len(query) > MAX_QUERY_CHARS:
        raise UsageError(f"the question is {len(query)} characters long: keep it under {MAX_QUERY_CHARS}")
    if "\x00" in query:
        raise UsageError("the question contains a NUL character")
    return query
