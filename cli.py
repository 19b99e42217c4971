"""The ``ai-helper-core`` command: ``serve``, ``worker``, ``token`` and ``db upgrade``."""

from __future__ import annotations

import typer

from core.config import Settings

app = typer.Typer(help="ai-helper-core: the AI engine of ai-helper.", no_args_is_help=True)
db_app = typer.Typer(
    help="Database migrations (the service's own ahc_ tables).", no_args_is_help=True
)
app.add_typer(db_app, name="db")
knowledge_app = typer.Typer(help="Knowledge-base maintenance.", no_args_is_help=True)
app.add_typer(knowledge_app, name="knowledge")


def checked_settings() -> Settings:
    """The settings, checked; a bad one ends the command with one line and exit code 2.

    Shared by the commands that start long-running processes (``serve``), so an operator
    reads ``AHC_REDIS_URL: Redis does not answer (...)``, never a traceback.
    """
    from core.startup_checks import ConfigError, check_settings, load_settings

    try:
        settings = load_settings()
        check_settings(settings)
    except ConfigError as exc:
        typer.echo(f"ai-helper-core: configuration error: {exc}", err=True)
        raise typer.Exit(2) from None
    return settings


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(1, min=1, help="Worker processes."),
    reload: bool = typer.Option(False, help="Reload on code changes (development)."),
) -> None:
    """Run the service with uvicorn.

    SIGTERM (or Ctrl-C) stops it gracefully: no new connections, in-flight requests and
    streams finish within ``AHC_SHUTDOWN_GRACE_SECONDS``, then the lifespan flushes usage
    events and hands running jobs back; the exit code is then 0.
    """
    import os

    import uvicorn

    settings = checked_settings()
    if settings.migrate_on_start and (workers > 1 or reload):
        # Migrate once here, not concurrently in every worker process.
        _upgrade(settings, "head")
        os.environ["AHC_MIGRATE_ON_START"] = "false"
    _exit_cleanly_after_graceful_stop()
    uvicorn.run(
        "server:app",
        host=host,
        port=port,
        workers=None if reload else workers,
        reload=reload,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )


def _exit_cleanly_after_graceful_stop() -> None:
    """Exit 0 once uvicorn has stopped gracefully on SIGTERM.

    uvicorn handles SIGTERM itself, then restores the handler it found and raises the
    signal again; with the default handler the process would die of it (exit 143) after a
    clean stop. This handler is the one it finds and restores.
    """
    import signal
    import sys

    def stopped(signum: int, _frame: object) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, stopped)


@app.command()
def worker(
    concurrency: int = typer.Option(
        None, min=1, help="Jobs run at once (default: AHC_KNOWLEDGE_WORKERS)."
    ),
    queues: str = typer.Option(
        "", help="Queues to work, comma-separated: knowledge, prompt (default: all)."
    ),
    migrate: bool = typer.Option(False, help="Run `db upgrade` first."),
    recover: bool = typer.Option(
        False, help="First re-queue accepted, unfinished documents and evaluations."
    ),
) -> None:
    """Run background jobs (ingestion, re-embedding, evaluations) from the shared queue."""
    import asyncio

    from pydantic import ValidationError

    from core.logging import configure_logging
    from jobs.procrastinate_queue import parse_queues
    from services.worker import run_worker

    try:
        settings = Settings()
    except ValidationError as exc:
        messages = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        typer.echo(f"error: {messages}", err=True)
        raise typer.Exit(2) from None
    if settings.job_queue != "procrastinate":
        typer.echo("error: `worker` needs AHC_JOB_QUEUE=procrastinate (and PostgreSQL)", err=True)
        raise typer.Exit(2)
    configure_logging(settings.log_level, json_logs=settings.json_logs)
    asyncio.run(
        run_worker(
            settings,
            concurrency=concurrency or settings.knowledge_workers,
            queues=parse_queues([queues]),
            migrate=migrate,
            recover=recover,
        )
    )


@app.command()
def token(
    org: str = typer.Option(..., help="Organization id (the org_id claim)."),
    user: str = typer.Option(..., help="User id (the sub claim)."),
    role: str = typer.Option("member", help="admin or member."),
    ttl: int = typer.Option(3600, min=1, help="Lifetime in seconds."),
) -> None:
    """Print a JWT signed with the service's secret (local use and the playground)."""
    from auth.tokens import mint_token

    if role not in ("admin", "member"):
        raise typer.BadParameter("role must be admin or member", param_hint="--role")
    try:
        typer.echo(mint_token(Settings(), org_id=org, user_id=user, role=role, ttl=ttl))  # type: ignore[arg-type]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations (also LangGraph's checkpoint tables and procrastinate's job tables)."""
    _upgrade(Settings(), revision)
    typer.echo(f"database at {revision}")


def _upgrade(settings: Settings, revision: str) -> None:
    """The service's migrations, LangGraph's checkpoint tables, the job queue's tables."""
    import asyncio

    from db.migrate import upgrade
    from graphs.checkpointer import open_checkpointer

    upgrade(settings, revision)

    async def _checkpointer() -> None:
        async with open_checkpointer(settings):
            pass
        if settings.job_queue == "procrastinate":
            from jobs.procrastinate_queue import ensure_schema, libpq_url

            await ensure_schema(libpq_url(settings.resolved_database_url), settings.job_schema)

    asyncio.run(_checkpointer())


@app.command("rotate-keys")
def rotate_keys() -> None:
    """Re-encrypt stored provider keys with the newest AHC_ENCRYPTION_KEYS entry."""
    import asyncio

    from db.session import create_engine, create_sessionmaker
    from providers.keys import ProviderKeyStore, load_vault

    settings = Settings()

    async def _rotate() -> int:
        engine = create_engine(settings)
        try:
            store = ProviderKeyStore(create_sessionmaker(engine), load_vault(settings))
            return await store.rotate()
        finally:
            await engine.dispose()

    typer.echo(f"re-encrypted {asyncio.run(_rotate())} provider keys")


@knowledge_app.command("reembed")
def knowledge_reembed(
    org: str = typer.Option(..., help="Organization id."),
    collection: str = typer.Option("default", help="Collection name."),
    model: str = typer.Option(
        None, help="Embedding model to rebuild with (default: AHC_EMBEDDING_MODEL)."
    ),
) -> None:
    """Re-embed a collection now (new Chroma collection, then swap), as the API's job does."""
    import asyncio

    from core.errors import ApiError
    from services.knowledge_admin import reembed_collection

    try:
        name, dimension = asyncio.run(
            reembed_collection(Settings(), org_id=org, collection=collection, model=model)
        )
    except ApiError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"collection {collection!r} of {org!r} now embedded with {name} ({dimension} dims)")


@db_app.command("revision")
def db_revision(message: str = typer.Option(..., "-m", help="What the migration does.")) -> None:
    """Autogenerate a migration from the models (developers)."""
    from db.migrate import revision

    revision(Settings(), message)


if __name__ == "__main__":
    app()
