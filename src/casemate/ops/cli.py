"""`casemate bundle` and `casemate doctor`: thin faces over casemate.ops.bundle and .doctor.

Also runnable alone (`python -m casemate.ops.cli doctor`), e.g. before the main CLI lists them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from casemate.errors import CasemateError


@click.command("bundle")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True, help="New folder for the bundle.")
@click.option("--profile", type=click.Choice(["full", "demo"]), default="full", show_default=True,
              help="demo: without the speech model (what `casemate demo` needs); same build otherwise.")
@click.option("--with-train", is_flag=True, help="Add the optional training part (torch CPU, ~190 MB).")
@click.option("--wheelhouse", "wheelhouse", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Build offline from these wheel folders only (e.g. an earlier bundle's wheels/).")
@click.option("--key", "key", type=click.Path(dir_okay=False), default=None,
              help="ed25519 PEM signing key (created when absent; default ~/.config/casemate/bundle_ed25519).")
@click.option("--tar", "tar", type=click.Path(dir_okay=False), default=None, help="Also write this tar archive.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def bundle_cmd(out: str, profile: str, with_train: bool, wheelhouse: tuple[str, ...], key: str | None,
               tar: str | None, as_json: bool) -> None:
    """Build the offline installation bundle (wheels, models, SBOM, licences, signed manifest)."""
    from casemate.ops.bundle import build_bundle, fingerprint

    report = build_bundle(
        Path(out), profile=profile, with_train=with_train, wheelhouse=[Path(w) for w in wheelhouse],
        key_path=Path(key) if key else None, tar_path=Path(tar) if tar else None,
        log=(lambda _m: None) if as_json else (lambda m: click.echo(m, err=True)),
    )
    pub = (report.out / "signing-key.pub").read_bytes()
    if as_json:
        click.echo(json.dumps(dict(report.to_json(), signing_key=fingerprint(pub)), indent=1))
        return
    click.echo(f"{report.out}: {len(report.wheels)} wheels, {report.size_bytes / 1e6:.0f} MB "
               f"({', '.join(report.parts)}); install with {report.out}/install.sh --venv DIR")
    if report.tar:
        click.echo(f"{report.tar}: {report.tar_bytes / 1e6:.0f} MB")
    click.echo(f"signing key {fingerprint(pub)}: publish it apart from the bundle")


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print every check as JSON.")
@click.option("--home", "home_opt", type=click.Path(file_okay=False), default=None,
              help="Workspace folder (default: the global --home, $CASEMATE_HOME or ~/.casemate).")
@click.option("--no-workspace", is_flag=True, help="Check the installation only (no workspace yet).")
@click.option("--full-audit", is_flag=True, help="Re-walk the whole audit chain instead of the quick check.")
@click.pass_context
def doctor_cmd(ctx: click.Context, as_json: bool, home_opt: str | None, no_workspace: bool, full_audit: bool) -> None:
    """Check this installation and say what to fix; exit 1 when any check fails."""
    from casemate.ops.doctor import run_checks

    home = home_opt
    root = ctx.find_root()
    if home is None and root is not ctx and isinstance(root.obj, object) and hasattr(root.obj, "home"):
        home = root.obj.home
    report = run_checks(home=None if no_workspace else home, workspace=not no_workspace, full_audit=full_audit)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=1))
    else:
        for check in report.checks:
            mark = {"ok": "ok  ", "fail": "FAIL", "warn": "warn", "skip": "skip"}[check.status]
            click.echo(f"{mark} {check.name:<12} {check.detail}")
            if check.status in ("fail", "warn") and check.fix:
                click.echo(f"     {'':<12} fix: {check.fix}")
        failed = [c.name for c in report.checks if c.status == "fail"]
        click.echo("all checks passed" if not failed else f"{len(failed)} check(s) failed: {', '.join(failed)}")
    if not report.ok:
        ctx.exit(1)


@click.group()
def ops_cli() -> None:
    """Casemate operations (also available as `casemate bundle` / `casemate doctor`)."""


ops_cli.add_command(bundle_cmd)
ops_cli.add_command(doctor_cmd)


def main(argv: list[str] | None = None) -> int:
    try:
        rv = ops_cli.main(args=argv, prog_name="casemate-ops", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except CasemateError as exc:
        click.echo(f"error: {exc.message}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except Exception as exc:  # a bug or an environment failure: one line, as the main CLI does
        if os.environ.get("CASEMATE_DEBUG"):
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (set CASEMATE_DEBUG=1 for details)", err=True)
        return 70


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
