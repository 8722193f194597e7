"""``perisai guard serve``: the Verify API on uvicorn. Errors: one line on stderr, exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from perisai.cli.common import fail, say
from perisai.guard.backends import DEFAULT_STATE, open_backend
from perisai.guard.config import GuardConfigError, load_config
from perisai.guard.interface import BackendError

__all__ = ["guard_app"]

guard_app = typer.Typer(
    help="A run-time shield for OTP, SMS and e-mail flows, and a self-hosted Verify API.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@guard_app.callback()
def guard_options() -> None:
    """perisai guard: stop OTP bombing, SMS pumping, OTP brute force and mail relaying."""


@guard_app.command()
def serve(
    config: Annotated[
        Path | None, typer.Option("--config", help="Policy YAML (defaults when absent).")
    ] = None,
    state: Annotated[
        str,
        typer.Option("--state", help="State: sqlite:///PATH, redis://… or memory://."),
    ] = DEFAULT_STATE,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8765,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="Serve without a token when none is set. For local trials only: anyone who "
            "reaches the API can then mark any number verified.",
        ),
    ] = False,
) -> None:
    """Serve the Verify API (POST /v1/verifications, /v1/verifications/check, /v1/decisions,
    /v1/events; GET /metrics, /healthz). Callers send Authorization: Bearer <token>, a token
    from api.tokens in the config or PERISAI_GUARD_TOKEN (comma-separated to rotate)."""
    import uvicorn

    from perisai.guard.api import create_app, required_tokens

    try:
        policy = load_config(config)
        # a missing or weak token fails before the state (a SQLite file) is created
        required_tokens(policy, insecure_no_auth=insecure_no_auth)
        backend = open_backend(state, tag=policy.key_tag)
        try:
            app = create_app(policy, backend=backend, insecure_no_auth=insecure_no_auth)
        except GuardConfigError:
            backend.close()
            raise
    except (GuardConfigError, BackendError) as exc:
        fail(str(exc))
    if not app.state.authenticated:
        say(
            "warning: the guard API has no token (--insecure-no-auth): anyone who "
            "reaches it can mark numbers verified; for local trials only"
        )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
