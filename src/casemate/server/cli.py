"""`casemate serve`: the assistant over HTTP (loopback by default)."""

from __future__ import annotations

import click

from casemate.cli import state_of


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.pass_context
def serve_cmd(ctx: click.Context, host: str, port: int) -> None:
    """Serve the chat page, /v1/chat/completions, /v1/models, /api/search and /docs."""
    import uvicorn

    from casemate.console import mount
    from casemate.server.app import create_app
    from casemate.server.embedders import serving_assistant

    ws = state_of(ctx).workspace()
    # one model and index shared by the server, the console and the uploads' indexing
    assistant = serving_assistant(ws)
    app = mount(create_app(ws, assistant), ws, assistant)
    click.echo(f"Casemate on http://{host}:{port}/  (console: /console/, API docs: /docs)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
