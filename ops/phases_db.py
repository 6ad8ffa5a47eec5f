"""`./start.sh db`: choose PostgreSQL and Redis, migrate the schema to head, check both.

The rule for choosing is ops/databases.py's; this is the command around it: what it prints, what
it records in `.env` and in the cutover state, and its gate (both answer, schema at head).
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from ops import databases, embedded
from ops.cli import (
    GateFailedError,
    PreconditionError,
    Run,
    _next,
    _shown,
    ensure_env_file,
    out,
)
from ops.state import CutoverState, gate_record


def db_phase(run: Run, *, force_embedded: bool = False, check_only: bool = False) -> str:
    """The body of `db`: a one-line summary for the history, or a CommandError."""
    settings = run.settings
    for line in ensure_env_file(settings):
        out.print(f"[green]✓[/] {line}")
    if check_only:
        given = databases.configured(settings)
        missing = [
            name
            for name, kind in (("DATABASE_URL", "postgres"), ("REDIS_URL", "redis"))
            if kind not in given
        ]
        if missing:
            raise PreconditionError(
                f"{' and '.join(missing)} not set: no databases chosen yet", "./start.sh db"
            )
        postgres_url, redis_url = given["postgres"][0], given["redis"][0]
        origins = {kind: given[kind][1] for kind in given}
        chosen = {
            kind: databases.where_set(origin, from_environment)
            for kind, (_, origin, from_environment) in given.items()
        }
        started: list[embedded.Started] = []
    else:
        resolution = _resolve(run, force_embedded)
        postgres_url, redis_url = resolution.postgres.url, resolution.redis.url
        origins = {"postgres": resolution.postgres.origin, "redis": resolution.redis.origin}
        chosen = {
            choice.kind: f"{databases.ORIGIN_TEXT[choice.origin]}: {choice.why}"
            if choice.origin != "set"
            else choice.why
            for choice in (resolution.postgres, resolution.redis)
        }
        started = resolution.started
        _migrate(run, postgres_url)

    result = databases.check(postgres_url, redis_url)
    _record(run, result, origins, started)
    _show(result, chosen)
    problems = result.problems()
    if problems:
        behind = result.postgres.ok and not result.at_head
        raise GateFailedError(
            "the database check failed:\n  " + "\n  ".join(problems),
            "./start.sh db (migrates to head)" if behind else "./start.sh db",
            summary="; ".join(problems),
        )
    out.print(f"[green]✓[/] both answer, schema at head ({result.head})")
    _next("./start.sh load-data", "./start.sh status")
    return (
        f"PostgreSQL {origins.get('postgres', 'set')} at {result.head}, "
        f"Redis {origins.get('redis', 'set')}"
    )


def _resolve(run: Run, force_embedded: bool) -> databases.Resolution:
    out.print("choosing the databases …" + (" (--embedded)" if force_embedded else ""))
    try:
        resolution = databases.resolve(run.settings, force_embedded=force_embedded)
    except databases.DatabaseError as exc:
        if exc.precondition:
            raise PreconditionError(str(exc), exc.next_step) from None
        raise GateFailedError(str(exc), exc.next_step) from None
    for note in resolution.notes:
        out.print(f"[yellow]![/] {note}")
    for server in resolution.started:
        label = "PostgreSQL" if server.name == embedded.POSTGRES else "Redis"
        if server.already_running:
            out.print(
                f"[green]✓[/] the embedded {label} already runs on 127.0.0.1:{server.port} "
                f"(pid {server.pid})"
            )
            continue
        initdb = (
            f", initdb {server.initdb_seconds:.2f} s" if server.initdb_seconds is not None else ""
        )
        out.print(
            f"[green]✓[/] started the embedded {label} on 127.0.0.1:{server.port} "
            f"(pid {server.pid}, {server.seconds:.2f} s{initdb}) under "
            f"{_shown(run.settings, embedded.embedded_dir(run.settings))}"
        )
    if resolution.env_updates:
        databases.update_env_file(run.settings.env_file, resolution.env_updates)
        out.print(
            f"[green]✓[/] wrote {', '.join(sorted(resolution.env_updates))} into "
            f"{run.settings.env_file.name}"
        )
    return resolution


def _migrate(run: Run, url: str) -> None:
    before = databases.probe_postgres(url).revision
    try:
        databases.upgrade_head(url)
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise GateFailedError(
            f"alembic upgrade head failed on {databases.mask_url(url)}: "
            f"{type(exc).__name__}: {message}",
            "alembic upgrade head (in the project root) shows the whole error",
        ) from None
    after = databases.probe_postgres(url).revision
    if before == after:
        out.print(f"[green]✓[/] schema already at head ({after})")
    else:
        out.print(f"[green]✓[/] alembic upgrade head: {before or 'empty'} → {after}")


def _record(
    run: Run,
    result: databases.Check,
    origins: dict[str, databases.Origin],
    started: list[embedded.Started],
) -> None:
    figures: dict[str, Any] = {
        "postgres": databases.mask_url(result.postgres_url),
        "postgres_origin": origins.get("postgres"),
        "postgres_version": result.postgres.version,
        "redis": databases.mask_url(result.redis_url),
        "redis_origin": origins.get("redis"),
        "redis_version": result.redis.version,
        "revision": result.postgres.revision,
        "head": result.head,
    }
    for server in started:
        if not server.already_running:
            figures[f"{server.name}_start_seconds"] = server.seconds
    detail = "both answer, schema at head" if result.passed else "; ".join(result.problems())

    def change(state: CutoverState) -> None:
        state.advance("db")
        state.gates["databases"] = gate_record(result.passed, detail, **figures)
        for server in started:
            state.processes[server.name] = {
                "pid": server.pid,
                "port": server.port,
                "url": databases.mask_url(server.url),
                "started_at": _started_at(run, server.name),
            }

    run.update(change)


def _started_at(run: Run, name: str) -> str | None:
    record = embedded.running_record(run.settings, name)
    return None if record is None else record.started_at


def _show(result: databases.Check, chosen: dict[str, str]) -> None:
    table = Table(title="databases", title_justify="left")
    for column in ("", "URL", "chosen", "version", "state"):
        table.add_column(column)
    if result.postgres.ok:
        state = Text(
            f"schema at {result.postgres.revision or 'none'} (head {result.head})",
            style="green" if result.at_head else "red",
        )
    else:
        state = Text(f"down: {result.postgres.error}", style="red")
    table.add_row(
        "PostgreSQL",
        databases.mask_url(result.postgres_url),
        chosen.get("postgres", ""),
        result.postgres.version or "-",
        state,
    )
    table.add_row(
        "Redis",
        databases.mask_url(result.redis_url),
        chosen.get("redis", ""),
        result.redis.version or "-",
        Text("answers", style="green")
        if result.redis.ok
        else Text(f"down: {result.redis.error}", style="red"),
    )
    out.print(table)
