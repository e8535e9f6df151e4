"""`casemate index`, `casemate search`, `casemate ask`, `casemate eval retrieval`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from casemate.cli import state_of


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
    report = assistant.index_all(user)
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


@eval_group.command("retrieval")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_retrieval_cmd(file: Path, as_json: bool) -> None:
    """Recall@1/5/10 and MRR on a SQuAD-format FILE, in a scratch workspace."""
    from casemate.assistant.evaluate import evaluate_retrieval

    result = evaluate_retrieval(file)
    if as_json:
        click.echo(json.dumps(result.to_json()))
        return
    click.echo(f"{result.questions} questions over {result.paragraphs} paragraphs ({file.name})")
    click.echo(f"recall@1  {result.recall_at[1]:.3f}")
    click.echo(f"recall@5  {result.recall_at[5]:.3f}")
    click.echo(f"recall@10 {result.recall_at[10]:.3f}")
    click.echo(f"MRR       {result.mrr:.3f}")
