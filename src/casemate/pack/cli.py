"""`casemate pack run SCENARIO` and `casemate pack scenarios`."""

from __future__ import annotations

from pathlib import Path

import click

from casemate.pack.scenario import builtin_names, load_scenario


@click.group("pack")
def pack_group() -> None:
    """Robot pack: simulate a heterogeneous swarm searching, visiting and watching an area."""


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
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def run_cmd(ctx: click.Context, scenario: str, seed: int, out_dir: str | None, quiet: bool) -> None:
    """Run SCENARIO (a YAML file or a built-in name) to the end and write its metrics and replays."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from casemate.cli import state_of
    from casemate.pack.replay import write_outputs
    from casemate.pack.sim import Simulation

    sc = load_scenario(scenario)  # validation first: a bad file runs nothing
    state = state_of(ctx)
    store = state.home is not None
    if store:
        from casemate.errors import UsageError
        from casemate.security import can_read, parse_label

        ws = state.workspace()
        user = state.user()
        if not can_read(user, parse_label(sc.label)):
            # checked before running: the results would carry a label this user could not store
            raise UsageError(f"scenario {sc.source}: label {sc.label} is above your clearance; nothing was run")
    sim = Simulation(sc, seed)
    if quiet:
        result = sim.run()
    else:
        with Progress(TextColumn(f"{sc.name} seed {seed}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                      TimeRemainingColumn(), transient=True) as prog:
            task = prog.add_task("run", total=sc.steps)
            result = sim.run(lambda k: prog.advance(task, k))
    out = Path(out_dir) if out_dir else Path("pack-runs") / f"{sc.name}-seed{seed}"
    paths = write_outputs(result, out)
    m = result.metrics
    cov = "-" if m["coverage"] is None else f"{100 * m['coverage']:.1f}%"
    click.echo(f"{sc.name}: {m['steps']} steps in {m['wall_s']:.1f} s; coverage {cov}; targets found "
               f"{m['targets_found']}/{len(m['targets'])}; tasks done {m['tasks_done']}/{m['tasks']} "
               f"(duplicates {m['duplicates']}); collisions {m['collisions']}; messages {m['messages_sent']} "
               f"sent, {m['messages_lost']} lost")
    click.echo(f"wrote {paths['metrics']}, {paths['replay']}, {paths['html']}")
    if store:
        _store(ws, user, sc, seed, paths)


def _store(ws: object, user: object, sc: object, seed: int, paths: dict[str, Path]) -> None:
    """The plan (scenario) and its results, labelled with the scenario's label, results derived from the plan."""
    import yaml

    cat = ws.catalog  # type: ignore[attr-defined]
    meta = {"scenario": sc.name, "seed": seed}  # type: ignore[attr-defined]
    plan = cat.put(user, yaml.safe_dump(sc.raw, sort_keys=False).encode(), name=f"{sc.name}.yaml", kind="mission",  # type: ignore[attr-defined]
                   label=sc.label, metadata={**meta, "role": "plan"}, source_path=sc.source)  # type: ignore[attr-defined]
    res = cat.put(user, paths["metrics"], name=f"{sc.name}-seed{seed}-metrics.json", kind="mission", label=sc.label,  # type: ignore[attr-defined]
                  parents=[plan.id], metadata={**meta, "role": "results"})
    rep = cat.put(user, paths["replay"], name=f"{sc.name}-seed{seed}-replay.jsonl", kind="telemetry", label=sc.label,  # type: ignore[attr-defined]
                  parents=[plan.id], metadata={**meta, "role": "replay"})
    click.echo(f"stored plan {plan.id}, results {res.id}, replay {rep.id} [{sc.label}]")  # type: ignore[attr-defined]
