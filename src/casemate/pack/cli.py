"""`casemate pack ...`: a thin face over casemate.pack.service (parse, call, print)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

from casemate.errors import UsageError
from casemate.pack.scenario import builtin_names, load_scenario


@click.group("pack")
def pack_group() -> None:
    """Robot pack: simulate a heterogeneous swarm searching, visiting and watching an area."""


def _ws_user(ctx: click.Context, what: str) -> tuple[Any, Any]:
    from casemate.cli import state_of

    state = state_of(ctx)
    if state.home is None:
        raise UsageError(f"{what} works on a workspace: give --home DIR (and --as NAME)")
    return state.workspace(), state.user()


@pack_group.command("scenarios")
def scenarios_cmd() -> None:
    """List the built-in scenarios."""
    for name in builtin_names():
        sc = load_scenario(name)
        kinds = ", ".join(f"{g.count} {g.type}" for g in sc.groups)
        click.echo(f"{name:24s} [{sc.label}] {sc.robot_count} robots ({kinds}), {sc.duration:g} s")


@pack_group.command("run")
@click.argument("scenario")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same run, bit for bit.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for metrics.json, replay.jsonl and replay.html (default: ./pack-runs/NAME-seedN).")
@click.option("--label", default=None, help="Label of the outputs (at least the scenario's; default: the scenario's).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--pace", type=float, default=None, metavar="X",
              help="Hold the run to X simulated seconds per second of wall time (a live mission an officer follows).")
@click.option("--poll", "poll_s", type=float, default=1.0, show_default=True, metavar="S",
              help="A stored mission reads the decisions taken while it runs (pack approve/reject, the API) every S s.")
@click.pass_context
def run_cmd(ctx: click.Context, scenario: str, seed: int, out_dir: str | None, label: str | None, quiet: bool,
            pace: float | None, poll_s: float) -> None:
    """Run SCENARIO (a YAML file, a built-in name, or with --home a stored mission's id) to the end.

    A stored mission's tasks waiting for an officer can be approved or rejected while it runs (from
    another shell, or the API): the run reads the decisions every --poll seconds."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from casemate.cli import state_of
    from casemate.pack.service import run_scenario

    state = state_of(ctx)
    ws, user = (state.workspace(), state.user()) if state.home is not None else (None, None)
    prog: Progress | None = None
    task: Any = None

    def start(sc: Any) -> None:
        nonlocal prog, task
        if pace is not None:
            click.echo(f"{sc.name}: running at {pace:g} simulated s per s; decisions taken meanwhile reach the "
                       f"robots within {poll_s:g} s")
        if not quiet:
            prog = Progress(TextColumn(f"{sc.name} seed {seed}"), BarColumn(),
                            TextColumn("{task.completed}/{task.total} steps"), TimeRemainingColumn(), transient=True)
            prog.start()
            task = prog.add_task("run", total=sc.steps)

    try:
        out = run_scenario(ws, user, scenario, seed=seed, out_dir=out_dir, label=label, start=start, pace=pace, poll_s=poll_s,
                           progress=None if quiet else (lambda k: prog.advance(task, k) if prog else None))
    finally:
        if prog is not None:
            prog.stop()
    m, sc, paths = out.result.metrics, out.scenario, out.paths
    cov = "-" if m["coverage"] is None else f"{100 * m['coverage']:.1f}%"
    click.echo(f"{sc.name}: {m['steps']} steps in {m['wall_s']:.1f} s; coverage {cov}; targets found "
               f"{m['targets_found']}/{len(m['targets'])}; tasks done {m['tasks_done']}/{m['tasks']} "
               f"(duplicates {m['duplicates']}); collisions {m['collisions']}; messages {m['messages_sent']} "
               f"sent, {m['messages_lost']} lost")
    for d in out.result.decisions:
        click.echo(f"task {d['task']} {d['gate']} at t={d['t']:g} s by {d['by']}: {d['reason']}")
    waiting = [t["task"] for t in out.result.tasks if t["gate"] == "waiting"]
    if waiting:
        click.echo(f"waiting for approval (not acted on): {', '.join(waiting)}")
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()))
    if out.results is not None:
        assert out.plan is not None and out.replay is not None
        click.echo(f"stored plan {out.plan.id}, results {out.results.id}, replay {out.replay.id} [{out.label}]")
        for f in out.findings:
            click.echo(f"finding {f.id}: task {f.metadata['task']} at level {f.metadata['level']} by robot "
                       f"{f.metadata['robot']}")
        for d in out.detections:
            click.echo(f"detections updated: {d.id} (new version of {d.asset_id})")


@pack_group.command("plan")
@click.option("--from-detections", "detections", required=True, metavar="ID",
              help="A stored detections version (GeoJSON, WGS84) from `casemate detect`.")
@click.option("--level", type=click.Choice(["D", "R", "I"]), default="I", show_default=True,
              help="The DRI level the robots are to reach; detections the imagery graded lower become tasks.")
@click.option("--robots", default="quadcopter:4", show_default=True, help="TYPE:COUNT[,TYPE:COUNT...]")
@click.option("--area", default=None, metavar="W,S,E,N", help="The area in degrees (default: round the detections).")
@click.option("--rules", "rules_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A YAML list of approval rules ({class, zone, level, timeout, on_timeout}).")
@click.option("--label", default=None, help="The mission's label (at least the detections').")
@click.option("--duration", type=float, default=900.0, show_default=True, help="Simulated seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the mission and its tasks as JSON.")
@click.pass_context
def plan_cmd(ctx: click.Context, detections: str, level: str, robots: str, area: str | None, rules_file: str | None,
             label: str | None, duration: float, as_json: bool) -> None:
    """Plan a mission for robots to confirm the detections the imagery could not grade to --level."""
    from casemate.pack.service import plan_from_detections

    rules = None
    if rules_file:
        try:
            rules = yaml.safe_load(Path(rules_file).read_text())
        except yaml.YAMLError as exc:
            raise UsageError(f"--rules {rules_file}: not valid YAML: {exc}") from None
        if not isinstance(rules, list):
            raise UsageError(f"--rules {rules_file}: expected a list of rules")
    ws, user = _ws_user(ctx, "pack plan")
    out = plan_from_detections(ws, user, detections, level=level, robots=robots, area=area, label=label, rules=rules,
                               duration=duration)
    if as_json:
        click.echo(json.dumps({"mission": out.mission.to_json(), "tasks": out.tasks}, indent=1))
        return
    marked = sum(t["marked"] for t in out.tasks)
    click.echo(f"mission {out.mission.id} [{out.scenario.label}]: {len(out.tasks)} tasks, {marked} awaiting approval")
    for t in out.tasks:
        click.echo(f"  {t['task']:6s} {t['class'] or '-':16s} imagery {t['imagery'] or '-'} -> {t['wanted']}"
                   f"{'  (needs approval)' if t['marked'] else ''}")


@pack_group.command("tasks")
@click.argument("mission")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def tasks_cmd(ctx: click.Context, mission: str, as_json: bool) -> None:
    """A stored mission's tasks: which need approval and what was decided."""
    from casemate.pack.service import mission_tasks

    ws, user = _ws_user(ctx, "pack tasks")
    rows = mission_tasks(ws, user, mission)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        past = {"approve": "approved", "reject": "rejected"}
        state = f"{past[r['decision']]} by {r['by']}: {r['reason']}" if r["decision"] else ("awaiting approval" if r["marked"] else "")
        click.echo(f"{r['task']:6s} {r['class'] or '-':16s} {r['level']}  {state}")


def _decide(ctx: click.Context, mission: str, task: str, reason: str, decision: str) -> None:
    from casemate.pack.service import decide

    ws, user = _ws_user(ctx, f"pack {decision}")
    v = decide(ws, user, mission, task, decision, reason)
    past = {"approve": "approved", "reject": "rejected"}[decision]
    click.echo(f"{past} task {task} of mission {mission} ({v.id}), reason audited")


@pack_group.command("approve")
@click.argument("mission")
@click.argument("task")
@click.option("--reason", required=True, help="Why (recorded in the audit log).")
@click.pass_context
def approve_cmd(ctx: click.Context, mission: str, task: str, reason: str) -> None:
    """Approve TASK of a stored MISSION: robots may act on it."""
    _decide(ctx, mission, task, reason, "approve")


@pack_group.command("reject")
@click.argument("mission")
@click.argument("task")
@click.option("--reason", required=True, help="Why (recorded in the audit log).")
@click.pass_context
def reject_cmd(ctx: click.Context, mission: str, task: str, reason: str) -> None:
    """Reject TASK of a stored MISSION: no robot acts on it; whoever held it is freed."""
    _decide(ctx, mission, task, reason, "reject")
