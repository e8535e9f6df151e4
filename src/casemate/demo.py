"""`casemate demo`: a workspace with users of different clearances and labelled documents, what each
user sees, the assistant answering within clearance, and the audit log verified. Runs offline on
the embedded defaults."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import click

from casemate.errors import CasemateError, NotFound
from casemate.security.labels import format_label

SAMPLES: dict[str, tuple[str, str]] = {
    # file name: (label, content)
    "np/horaires-mess.txt": (
        "NP",
        "Horaires du mess de la base navale.\nLe petit-déjeuner est servi de 6 h 30 à 8 h.\n"
        "Le déjeuner est servi de 11 h 45 à 13 h 30.\nLe mess est fermé le dimanche soir.",
    ),
    "np/consignes-incendie.md": (
        "NP",
        "# Consignes incendie\n\nEn cas d'alarme, évacuer par l'escalier B et se rassembler sur le parking nord.\n"
        "Le point de rassemblement est contrôlé par le chef de quart.",
    ),
    "dr/note-logistique.html": (
        "DR",
        "<html><body><h1>Note logistique</h1><p>Le ravitaillement en carburant du détachement de Brest "
        "est prévu le 14 décembre. Trois camions-citernes partiront du dépôt de Guipavas.</p></body></html>",
    ),
    "s/rapport-patrouille.txt": (
        "S",
        "Rapport de patrouille maritime. La patrouille a observé deux navires non identifiés au nord "
        "d'Ouessant, à 12 milles nautiques. Les deux navires font route au cap 270 à 14 nœuds. "
        "Surveillance renforcée demandée.",
    ),
    "ts-alpha/operation-alpha.txt": (
        "TS//ALPHA",
        "Opération ALPHA : insertion d'une équipe de reconnaissance le 3 janvier, point de ramassage "
        "GRAYWHALE. Liste de diffusion restreinte au compartiment ALPHA.",
    ),
}

# (user, question): each answer is read from a document that user may read (the patrol report:
# its declassified DR version for dana, both versions for sam)
DEMO_QUESTIONS = [
    ("nora", "Où faut-il se rassembler en cas d'alarme incendie ?"),
    ("dana", "Qu'a observé la patrouille au nord d'Ouessant ?"),
    ("sam", "Qu'a observé la patrouille au nord d'Ouessant ?"),
    ("alex", "Combien de camions-citernes partiront du dépôt de Guipavas ?"),
]

USERS = [
    ("nora", "NP", ["analyst"]),
    ("dana", "DR", ["analyst"]),
    ("sam", "S", ["analyst", "officer"]),
    ("alex", "TS//ALPHA", ["analyst"]),
]


def run_demo(home: Path, echo=click.echo) -> None:  # type: ignore[no-untyped-def]
    from casemate.catalog.ingest import ingest
    from casemate.workspace import Workspace

    ws = Workspace.init(home)
    try:
        admin = ws.acting_user("admin")
        echo(f"1. Workspace created at {home}")
        for name, clearance, roles in USERS:
            ws.users.add(admin, name, clearance, roles)
        echo("   users: " + ", ".join(f"{n} ({c}, {'/'.join(r)})" for n, c, r in USERS) + ", admin (TS, admin)")

        src = home.parent / "demo-inbox"
        for rel, (_label, content) in SAMPLES.items():
            path = src / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        echo("2. Ingest of labelled documents")
        for folder, label in [("np", "NP"), ("dr", "DR"), ("s", "S"), ("ts-alpha", "TS//ALPHA")]:
            ingester = ws.acting_user("alex" if "ALPHA" in label else "admin")
            report = ingest(ws, ingester, [src / folder], label, run_hooks=False)
            echo(f"   {folder:<9} as {label:<10} {report.summary()}")

        echo("3. What each user sees (`casemate ls`)")
        visible: dict[str, list] = {}
        for name in ["nora", "dana", "sam", "alex", "admin"]:
            user = ws.acting_user(name)
            versions = ws.catalog.list(user)
            visible[name] = versions
            shown = ", ".join(f"{v.name} [{format_label(v.label)}]" for v in reversed(versions)) or "nothing"
            echo(f"   {name:<6} ({format_label(user.clearance):<10}) sees {len(versions)}: {shown}")

        secret = next(v for v in visible["sam"] if format_label(v.label) == "S")
        echo("4. A hidden document looks exactly like a missing one")
        for probe in (secret.id, "doesnotexist"):
            try:
                ws.catalog.get(ws.acting_user("dana"), probe)
            except NotFound as exc:
                echo(f"   dana> casemate show {probe:<13} -> error: {exc.message}")

        echo("5. An officer declassifies the patrol report to DR; dana can now read the new version")
        dec = ws.catalog.declassify(ws.acting_user("sam"), secret.id, "DR", "publié au bulletin hebdomadaire")
        echo(f"   new version {dec.id} [{format_label(dec.label)}]: {ws.catalog.text(ws.acting_user('dana'), dec.id)[:60]}...")
        tree = ws.catalog.lineage(ws.acting_user("dana"), dec.id)
        echo(f"   lineage seen by dana: {tree['id']} with {len(tree['parents'])} visible parent(s) (the S source stays hidden)")

        _assistant_step(ws, echo)

        result = ws.audit.verify()
        echo(
            f"7. Audit log: {'intact' if result.ok else 'DAMAGED'}, {result.entries} entries, "
            f"{result.checkpoints} signed checkpoints (`casemate audit verify`)"
        )
    finally:
        ws.close()
    with Workspace.open(home) as ws:
        final = ws.audit.verify()
    echo(f"   after close: {'intact' if final.ok else 'DAMAGED'} with {final.checkpoints} signed checkpoints")


def _assistant_step(ws, echo) -> None:  # type: ignore[no-untyped-def]
    """The assistant answers within each user's clearance (skipped, saying why, if unavailable)."""
    from casemate.assistant.pipeline import Assistant

    try:
        assistant = Assistant(ws)
        for reader in ("alex", "sam"):  # each indexes what they may read; chunks keep their labels
            assistant.index_all(ws.acting_user(reader))
        echo("6. Assistant (local Qwen2.5-Coder-0.5B + e5 retrieval): each user asks within their clearance")
        for name, question in DEMO_QUESTIONS:
            answer = assistant.ask(ws.acting_user(name), question, max_tokens=64).to_json()
            text = " ".join(str(answer["answer"]).split())
            text = text if len(text) <= 150 else text[:149] + "…"
            cited = {int(n) for n in answer["cited"]}
            sources = ", ".join(f"[{c['n']}] {c['name']} [{c['label']}]" for c in answer["citations"]
                                if c["n"] in cited) or "none"
            echo(f"   {name:<5} « {question} »")
            echo(f"   {name:<5} answer labelled {answer['label']}: {text}")
            echo(f"         cited: {sources}")
    except CasemateError as exc:
        echo(f"6. Assistant: skipped ({exc.message})")


@click.command("demo")
@click.option("--keep", is_flag=True, help="Keep the demo workspace (printed at the end).")
@click.option("--dir", "where", type=click.Path(file_okay=False), default=None, help="Where to create it.")
def demo_cmd(keep: bool, where: str | None) -> None:
    """Run the end-to-end demo on embedded sample data (offline)."""
    base = Path(where) if where else Path(tempfile.mkdtemp(prefix="casemate-demo-"))
    home = base / "workspace"
    try:
        run_demo(home)
    finally:
        if not keep and where is None:
            shutil.rmtree(base, ignore_errors=True)
            click.echo("\n(demo workspace removed; `casemate demo --keep` keeps it to explore)")
        else:
            click.echo(f"\nExplore it: casemate --home {home} --as dana ls")
