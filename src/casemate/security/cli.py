"""CLI faces of users, tokens and the audit log."""

from __future__ import annotations

import json
import sys

import click

from casemate.cli import state_of
from casemate.errors import IntegrityError, PermissionDenied, UsageError
from casemate.security.labels import format_label


@click.group("user")
def user_group() -> None:
    """Manage users (admin only)."""


@user_group.command("add")
@click.argument("name")
@click.option("--clearance", "-c", required=True, help="The user's clearance label, e.g. S//ALPHA.")
@click.option("--role", "-r", "roles", multiple=True, help="admin, officer or analyst (repeatable; default analyst).")
@click.pass_context
def user_add(ctx: click.Context, name: str, clearance: str, roles: tuple[str, ...]) -> None:
    state = state_of(ctx)
    user = state.workspace().users.add(state.user(), name, clearance, roles or ("analyst",))
    click.echo(f"user {user.name} added (clearance {format_label(user.clearance)}, roles {', '.join(sorted(user.roles))})")


@user_group.command("ls")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def user_ls(ctx: click.Context, as_json: bool) -> None:
    state = state_of(ctx)
    users = state.workspace().users.list(state.user())
    rows = [
        {"name": u.name, "clearance": format_label(u.clearance), "roles": sorted(u.roles), "disabled": u.disabled}
        for u in users
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        flag = "  (disabled)" if r["disabled"] else ""
        click.echo(f"{r['name']:<20} {r['clearance']:<20} {','.join(r['roles'])}{flag}")


@user_group.command("disable")
@click.argument("name")
@click.pass_context
def user_disable(ctx: click.Context, name: str) -> None:
    state = state_of(ctx)
    state.workspace().users.disable(state.user(), name)
    click.echo(f"user {name} disabled")


@user_group.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
def user_passwd(ctx: click.Context, name: str, password_stdin: bool) -> None:
    """Set a user's password (yours, or anyone's as admin)."""
    state = state_of(ctx)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("new password", hide_input=True, confirmation_prompt=True)
    state.workspace().users.set_password(state.user(), name, password)
    click.echo(f"password set for {name}")


@click.group("token")
def token_group() -> None:
    """API tokens for the HTTP server."""


@token_group.command("create")
@click.option("--for", "for_user", default=None, metavar="NAME", help="Another user (admin only).")
@click.option("--label", "token_label", default="", help="A note to recognise the token by.")
@click.pass_context
def token_create(ctx: click.Context, for_user: str | None, token_label: str) -> None:
    """Create a token; it is shown once."""
    state = state_of(ctx)
    click.echo(state.workspace().tokens.create(state.user(), for_user, token_label))


@token_group.command("ls")
@click.option("--for", "for_user", default=None, metavar="NAME", help="Another user's tokens (admin only).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def token_ls(ctx: click.Context, for_user: str | None, as_json: bool) -> None:
    """Your tokens (an admin sees everyone's); never the secret itself."""
    state = state_of(ctx)
    tokens = state.workspace().tokens.list(state.user(), for_user=for_user)
    if as_json:
        click.echo(json.dumps([t.to_json() for t in tokens], indent=2))
        return
    for t in tokens:
        click.echo(f"{t.id:>6}  {t.user:<20} {t.created_at}  {'revoked' if t.revoked else 'active ':<8} {t.label}")


@token_group.command("revoke")
@click.argument("token_id", type=int)
@click.pass_context
def token_revoke(ctx: click.Context, token_id: int) -> None:
    """Revoke a token at once (see `casemate token ls` for ids)."""
    state = state_of(ctx)
    t = state.workspace().tokens.revoke(state.user(), token_id)
    click.echo(f"token {t.id} of {t.user} revoked")


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit log."""


def _require_auditor(state) -> None:  # type: ignore[no-untyped-def]
    actor = state.user()
    if not (actor.has_role("admin") or actor.has_role("officer")):
        raise PermissionDenied("only an admin or an officer can read the audit log")


@audit_group.command("verify")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def audit_verify(ctx: click.Context, as_json: bool) -> None:
    """Check the whole chain and every signed checkpoint; exit 0 when intact."""
    state = state_of(ctx)
    _require_auditor(state)
    ws = state.workspace()
    result = ws.audit.verify()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": result.ok,
                    "entries": result.entries,
                    "checkpoints": result.checkpoints,
                    "first_bad": result.first_bad,
                    "reason": result.reason,
                }
            )
        )
    elif result.ok:
        click.echo(f"audit log intact: {result.entries} entries, {result.checkpoints} signed checkpoints")
    else:
        click.echo(f"audit log damaged at entry {result.first_bad}: {result.reason}", err=True)
    if not result.ok:
        ctx.exit(IntegrityError.exit_code)


@audit_group.command("tail")
@click.option("-n", "count", default=20, show_default=True, help="How many entries.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def audit_tail(ctx: click.Context, count: int, as_json: bool) -> None:
    """The last entries (those about items you may not read are left out)."""
    if count < 1:
        raise UsageError("-n must be at least 1")
    state = state_of(ctx)
    _require_auditor(state)
    entries = state.workspace().audit.tail_for(state.user(), count)
    if as_json:
        click.echo(json.dumps([e.to_json() for e in entries], ensure_ascii=False, indent=2))
        return
    for e in entries:
        detail = json.dumps(e.detail, ensure_ascii=False) if e.detail else ""
        click.echo(f"{e.seq:>8}  {e.ts}  {e.actor:<12} {e.action:<16} {e.target or '-':<14} {detail}")
