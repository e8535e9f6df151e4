"""CLI faces of the catalog: init, ingest, ls, show, cat, lineage, declassify."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from casemate.cli import state_of
from casemate.security.labels import format_label


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2))


def _human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} TiB"


@click.command("init")
@click.option(
    "--database-url",
    default=None,
    metavar="URL",
    help="Keep the metadata in PostgreSQL (postgresql+psycopg://user@/db?host=/run/postgresql) instead of SQLite.",
)
@click.pass_context
def init_cmd(ctx: click.Context, database_url: str | None) -> None:
    """Create a workspace (and its admin user)."""
    from casemate.workspace import Workspace

    state = state_of(ctx)
    ws = Workspace.init(state.home, database_url=database_url)
    state._workspace = ws
    click.echo(f"workspace created at {ws.home} (user admin, clearance TS, role admin)")


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--label", "-l", required=True, help="Classification label, e.g. DR, S//ALPHA, 'Très Secret'.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-hooks", is_flag=True, help="Do not run after-ingest hooks (indexing, transcription).")
@click.option(
    "--batch-size",
    default=500,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Files committed per transaction (smaller: less work redone after a crash).",
)
@click.pass_context
def ingest_cmd(
    ctx: click.Context, paths: tuple[str, ...], label: str, as_json: bool, no_hooks: bool, batch_size: int
) -> None:
    """Ingest files and folders (recursively) with a classification label."""
    from casemate.catalog.ingest import Ingester, walk
    from casemate.security.labels import parse_label

    parse_label(label)  # a bad label is one clear error before anything is read
    state = state_of(ctx)
    ws = state.workspace()
    user = state.user()
    show_bar = sys.stderr.isatty() and not as_json
    if show_bar:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from casemate.catalog.ingest import IngestReport

        total = sum(1 for _ in walk(paths, IngestReport()))
        with Progress(
            TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
        ) as bar:
            task = bar.add_task("ingest", total=total)
            report = Ingester(
                ws,
                user,
                label,
                batch_size=batch_size,
                progress=lambda n: bar.advance(task, n),
                run_hooks=not no_hooks,
            ).run(paths)
    else:
        report = Ingester(ws, user, label, batch_size=batch_size, run_hooks=not no_hooks).run(paths)
    if as_json:
        echo_json(
            {
                "ingested": [v.to_json() for v in report.ingested],
                "skipped": report.skipped,
                "failed": [{"path": p, "error": e} for p, e in report.failed],
                "hook_errors": [{"hook": h, "error": e} for h, e in report.hook_errors],
            }
        )
    else:
        for path, error in report.failed:
            click.echo(f"failed: {path}: {error}", err=True)
        for hook, error in report.hook_errors:
            click.echo(f"warning: after-ingest step {hook}: {error}", err=True)
        click.echo(report.summary())
    if report.failed:
        ctx.exit(1)


@click.command("ls")
@click.option("--kind", "-k", default=None, help="Only this kind (document, image, audio, telemetry, other, ...).")
@click.option("--limit", "-n", default=50, show_default=True, help="Page size.")
@click.option("--before", default=None, metavar="ID", help="Next page: versions older than this one.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ls_cmd(ctx: click.Context, kind: str | None, limit: int, before: str | None, as_json: bool) -> None:
    """List the versions you may read, newest first."""
    state = state_of(ctx)
    versions = state.workspace().catalog.list(state.user(), kind=kind, limit=limit, before=before)
    if as_json:
        echo_json([v.to_json() for v in versions])
        return
    if not versions:
        click.echo("nothing to show")
        return
    for v in versions:
        click.echo(f"{v.id}  {format_label(v.label):<16} {v.kind:<10} {_human_size(v.size):>10}  {v.name}")


@click.command("show")
@click.argument("item_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show_cmd(ctx: click.Context, item_id: str, as_json: bool) -> None:
    """Show a version's metadata (an asset id shows its newest version you may read)."""
    state = state_of(ctx)
    v = state.workspace().catalog.get(state.user(), item_id)
    if as_json:
        echo_json(v.to_json())
        return
    d = v.to_json()
    d["label"] = f"{d['label']} ({v.label.display})"
    d["size"] = f"{v.size} bytes"
    for key in ("id", "asset_id", "name", "kind", "label", "sha256", "size", "source_path", "created_by", "created_at"):
        click.echo(f"{key:<12} {d[key]}")
    if v.parents:
        click.echo(f"{'parents':<12} {', '.join(v.parents)}")
    if v.metadata:
        click.echo(f"{'metadata':<12} {json.dumps(v.metadata, ensure_ascii=False)}")


@click.command("cat")
@click.argument("item_id")
@click.option("--raw", is_flag=True, help="The stored bytes even for documents (default: extracted text).")
@click.pass_context
def cat_cmd(ctx: click.Context, item_id: str, raw: bool) -> None:
    """Print a version's extracted text, or its content."""
    state = state_of(ctx)
    catalog = state.workspace().catalog
    user = state.user()
    text = None if raw else catalog.text(user, item_id)
    if text is not None:
        click.echo(text)
        return
    data = catalog.read_bytes(user, item_id)
    out = click.get_binary_stream("stdout")
    out.write(data)
    out.flush()


@click.command("lineage")
@click.argument("item_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def lineage_cmd(ctx: click.Context, item_id: str, as_json: bool) -> None:
    """Show what a version was derived from (only what you may read)."""
    state = state_of(ctx)
    tree = state.workspace().catalog.lineage(state.user(), item_id)
    if as_json:
        echo_json(tree)
        return

    def show(node: dict, depth: int) -> None:
        click.echo(f"{'  ' * depth}{'└─ ' if depth else ''}{node['id']}  {node['label']}  {node['kind']}  {node['name']}")
        for parent in node["parents"]:
            show(parent, depth + 1)

    show(tree, 0)


@click.command("declassify")
@click.argument("item_id")
@click.option("--to", "to_label", required=True, help="The new, lower label.")
@click.option("--reason", required=True, help="Why this may be declassified (audited).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def declassify_cmd(ctx: click.Context, item_id: str, to_label: str, reason: str, as_json: bool) -> None:
    """Officers only: create a new version with a lower label."""
    state = state_of(ctx)
    v = state.workspace().catalog.declassify(state.user(), item_id, to_label, reason)
    if as_json:
        echo_json(v.to_json())
    else:
        click.echo(f"{v.id}  declassified to {format_label(v.label)} (new version of asset {v.asset_id})")


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
@click.option(
    "--min-age",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds a blob must have existed unreferenced before it goes (protects running ingests).",
)
@click.pass_context
def gc_cmd(ctx: click.Context, dry_run: bool, min_age: float) -> None:
    """Admins: remove blobs that no version points to (left by crashes)."""
    from casemate.catalog.gc import collect_garbage

    state = state_of(ctx)
    r = collect_garbage(state.workspace(), state.user(), min_age_s=min_age, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{r.unreferenced} unreferenced blobs: {verb} {r.removed} ({r.bytes_freed} bytes), "
        f"kept {r.kept_recent} younger than {min_age:.0f} s"
    )
