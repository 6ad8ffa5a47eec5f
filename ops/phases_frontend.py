"""`./start.sh frontend`: the reference dashboard on FRONTEND_PORT, in the background.

It changes nothing in the cutover (no lock, no history entry), so it can start while a shadow or
canary command holds the lock. The page reads its API URL from the frontend env file on each
load; the command says which backend that is now and warns when the backends' CORS_ORIGINS would
refuse the page's origin.
"""

from __future__ import annotations

import os
import sys

from ops import services
from ops.cli import EXIT_DONE, GateFailedError, PreconditionError, _next, _shown, out
from ops.frontend_server import page_env
from ops.settings import OpsSettings, read_env_file

NAME = "frontend"
MODULE = "ops.frontend_server"
DEFAULT_ORIGINS = "http://localhost:3000,http://127.0.0.1:3000"


def frontend_spec(settings: OpsSettings) -> services.ServiceSpec:
    """`python -m ops.frontend_server` on FRONTEND_PORT, healthy when /health answers."""
    argv = (
        sys.executable,
        "-m",
        MODULE,
        "--host",
        settings.host,
        "--port",
        str(settings.frontend_port),
        "--log-file",
        str(services.log_path(settings, NAME)),
    )
    return services.ServiceSpec(
        name=NAME,
        module=MODULE,
        argv=argv,
        port=settings.frontend_port,
        host=settings.host,
        health_path="/health",
    )


def missing_origins(settings: OpsSettings) -> list[str]:
    """The page's origins that CORS_ORIGINS (as the backends will read it) does not allow."""
    env = {**read_env_file(settings.env_file), **os.environ}
    allowed = {o.strip().rstrip("/") for o in env.get("CORS_ORIGINS", DEFAULT_ORIGINS).split(",")}
    if "*" in allowed:
        return []
    port = settings.frontend_port
    wanted = [f"http://localhost:{port}", f"http://{settings.host}:{port}"]
    return [origin for origin in wanted if origin not in allowed]


def frontend_phase(settings: OpsSettings) -> int:
    spec = frontend_spec(settings)
    out.print(f"starting the reference dashboard on {spec.url} …")
    try:
        result = services.start_service(settings, spec)
    except services.PortBusyError as exc:
        raise PreconditionError(str(exc), "./start.sh status; set FRONTEND_PORT in .env") from None
    except services.ServiceError as exc:
        raise GateFailedError(str(exc), f"./start.sh logs {NAME}", summary=exc.summary) from None
    record = result.record
    if result.already_running:
        out.print(f"[green]✓[/] the dashboard already runs at {record.url} (pid {record.pid})")
    else:
        out.print(
            f"[green]✓[/] the dashboard is up at {record.url} (pid {record.pid}, "
            f"in {result.startup_seconds:.2f} s)"
        )
    env = page_env(settings.frontend_env_file, settings.url(settings.mock_port))
    env_file = _shown(settings, settings.frontend_env_file)
    source = env_file if env["source"] == settings.frontend_env_file.name else env["source"]
    out.print(
        f"  it talks to {env['apiUrl']} and {env['wsUrl']} (from {source}); a rewritten "
        f"{env_file} takes effect on the next page load, within 30 s, or when its socket moves"
    )
    for origin in missing_origins(settings):
        out.print(
            f"[yellow]![/] CORS_ORIGINS does not allow {origin}: the backends will refuse the "
            f"page opened there; add it in .env and restart them"
        )
    out.print(f"  log: {_shown(settings, services.log_path(settings, NAME))}")
    _next(f"open {record.url}", f"./start.sh logs {NAME}", f"./start.sh stop {NAME}")
    return EXIT_DONE
