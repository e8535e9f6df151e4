"""The `casemate` command: a thin face over the library.

Each capability keeps its commands in its own `cli.py`; they are imported only when called, so
`casemate ls` never pays for importing torch, ONNX Runtime or llama.cpp.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click

from casemate.errors import CasemateError

if TYPE_CHECKING:  # the workspace (and its database layer) is imported only by commands that open one
    from casemate.security.policy import User
    from casemate.workspace import Workspace

# command name -> "module:attribute"; the attribute is a click.Command or click.Group.
LAZY_COMMANDS: dict[str, str] = {
    "init": "casemate.catalog.cli:init_cmd",
    "user": "casemate.security.cli:user_group",
    "token": "casemate.security.cli:token_group",
    "audit": "casemate.security.cli:audit_group",
    "ingest": "casemate.catalog.cli:ingest_cmd",
    "ls": "casemate.catalog.cli:ls_cmd",
    "show": "casemate.catalog.cli:show_cmd",
    "cat": "casemate.catalog.cli:cat_cmd",
    "lineage": "casemate.catalog.cli:lineage_cmd",
    "declassify": "casemate.catalog.cli:declassify_cmd",
    "gc": "casemate.catalog.cli:gc_cmd",
    "demo": "casemate.demo:demo_cmd",
    # assistant (issue 3)
    "index": "casemate.assistant.cli:index_cmd",
    "search": "casemate.assistant.cli:search_cmd",
    "ask": "casemate.assistant.cli:ask_cmd",
    "eval": "casemate.assistant.cli:eval_group",
    "serve": "casemate.server.cli:serve_cmd",
    # imagery (issue 4)
    "detect": "casemate.imagery.cli:detect_cmd",
    "imagery": "casemate.imagery.cli:imagery_group",
    # speech (issue 6)
    "transcribe": "casemate.speech.cli:transcribe_cmd",
    # robot pack (issue 5)
    "pack": "casemate.pack.cli:pack_group",
    # model factory (issue 15)
    "dataset": "casemate.factory.cli:dataset_group",
    "jobs": "casemate.factory.cli:jobs_group",
    "train": "casemate.factory.cli:train_group",
    "models": "casemate.factory.cli:models_group",
    "check-labels": "casemate.factory.cli:check_labels_cmd",
    # operations (issue 14)
    "bundle": "casemate.ops.cli:bundle_cmd",
    "doctor": "casemate.ops.cli:doctor_cmd",
}


@dataclass
class CliState:
    """What every command needs: where the workspace is and who is acting."""

    home: str | None
    user_name: str
    _workspace: Workspace | None = field(default=None, repr=False)

    def workspace(self) -> Workspace:
        """Open the workspace once per command (a missing one is a clear error)."""
        if self._workspace is None:
            from casemate.workspace import Workspace

            self._workspace = Workspace.open(self.home)
        return self._workspace

    def user(self) -> User:
        return self.workspace().acting_user(self.user_name)

    def close(self) -> None:
        if self._workspace is not None:
            self._workspace.close()
            self._workspace = None


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS:
            module_name, attr = LAZY_COMMANDS[cmd_name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    default=None,
    help="Workspace folder (default: $CASEMATE_HOME or ~/.casemate).",
)
@click.option(
    "--as",
    "as_user",
    default=None,
    metavar="NAME",
    help="Act as this user (default: $CASEMATE_USER or admin).",
)
@click.version_option(package_name="casemate")
@click.pass_context
def cli(ctx: click.Context, home: str | None, as_user: str | None) -> None:
    """Casemate: labelled catalog, assistant, imagery, speech and robot packs, offline."""
    state = CliState(home=home, user_name=as_user or os.environ.get("CASEMATE_USER") or "admin")
    ctx.obj = state
    ctx.call_on_close(state.close)


def state_of(ctx: click.Context) -> CliState:
    return ctx.find_root().obj


GLOBAL_VALUE_OPTIONS = ("--home", "--as")


def hoist_global_options(argv: Sequence[str]) -> list[str]:
    """Global options are accepted before or after the subcommand: `--home DIR` and `--as NAME`
    anywhere (up to a `--`) move to the front; a `--json` given before the subcommand moves to
    its end, where the command that prints JSON reads it."""
    args = list(argv)
    end = args.index("--") if "--" in args else len(args)
    front: list[str] = []
    rest: list[str] = []
    json_before = False
    seen_command = False
    i = 0
    while i < end:
        arg = args[i]
        name = arg.split("=", 1)[0]
        if name in GLOBAL_VALUE_OPTIONS:
            if "=" in arg:
                front.append(arg)
            else:
                front.extend(args[i : i + 2])
                i += 1
        elif arg == "--json" and not seen_command:
            json_before = True
        else:
            if not arg.startswith("-"):
                seen_command = True
            rest.append(arg)
        i += 1
    tail = args[end:]
    if json_before:
        rest.append("--json")
    return front + rest + tail


DISK_FULL_EXIT = 74  # sysexits' EX_IOERR


def disk_full_message(exc: BaseException, args: Sequence[str] = ()) -> str | None:
    """A full disk (ENOSPC from a write, SQLite's "database or disk is full", PostgreSQL's
    DiskFull), anywhere in the exception's chain, as a message naming the disk; else None.
    Whatever failed was inside a transaction, so nothing of it is stored."""
    import errno

    from casemate.workspace import resolve_home

    home = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--home"), None)
    seen: BaseException | None = exc
    where: str | None = None
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            where = str(seen.filename) if seen.filename else ""
            break
        text = str(seen)
        if "database or disk is full" in text or "No space left on device" in text:
            where = ""
            break
        # SQLite reports a failed write of its WAL index as an I/O error, without the errno
        if "disk I/O error" in text and _nearly_full(str(resolve_home(home))):
            where = ""
            break
        seen = seen.__cause__ or seen.__context__
    if where is None:
        return None
    path = os.path.abspath(where or str(resolve_home(home)))
    mount = path
    while mount != os.path.dirname(mount) and not os.path.ismount(mount):
        mount = os.path.dirname(mount)
    return (f"the disk holding {path} (mounted at {mount}) is full: nothing of the failed step was stored; "
            "free space there (`casemate gc` removes unreferenced blobs) and run the command again")


def _nearly_full(path: str) -> bool:
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < max(4 << 20, st.f_blocks * st.f_frsize // 100)


def main(argv: list[str] | None = None) -> int:
    """Entry point: CasemateError becomes one line on stderr and its exit code, never a traceback."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
    try:
        rv = cli.main(args=args, prog_name="casemate", standalone_mode=False)
        if isinstance(rv, int):
            return rv  # ctx.exit(code) in non-standalone mode
    except CasemateError as exc:
        click.echo(f"error: {exc.message}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except BrokenPipeError:
        # `casemate ls | head`: the reader went away; that is not an error.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # a bug or an environment failure: one line, details on request
        if os.environ.get("CASEMATE_DEBUG"):
            raise
        full = disk_full_message(exc, args)
        if full:
            click.echo(f"error: {full}", err=True)
            return DISK_FULL_EXIT
        click.echo(f"internal error: {type(exc).__name__}: {exc} (set CASEMATE_DEBUG=1 for details)", err=True)
        return 70
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
