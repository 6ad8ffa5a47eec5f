"""`./start.sh drill NAME|all [--list]`: a rehearsed fault on a system of the drill's own.

Each drill brings up its own embedded PostgreSQL and Redis, mock, prod, worker and gateway on
free loopback ports under a temporary directory (never the operator's var/), injects its fault,
checks its promise and stops everything by pid. Exit 0 when every promise held, 1 when one broke,
2 for a name that is no drill. The result goes to var/reports/drill-NAME.json.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ops.cli import EXIT_DONE, EXIT_GATE_FAILED, PreconditionError, out
from ops.drills.catalog import BY_NAME, DRILLS
from ops.drills.outcome import DrillOptions, DrillResult
from ops.drills.runner import run_drill, save
from ops.settings import OpsSettings


def _say(line: str) -> None:
    out.print(Text(line), soft_wrap=True)


def render_table(results: list[DrillResult]) -> Table:
    table = Table(title="drills", title_justify="left")
    for column in ("drill", "injected", "observed", "result", "seconds"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for result in results:
        verdict = Text("pass", style="green") if result.passed else Text("FAIL", style="red")
        observed = "; ".join(result.observed) or result.error
        if result.error and result.observed:
            observed += f"; {result.error}"
        table.add_row(result.name, result.injected, observed, verdict, f"{result.seconds:.0f}")
    return table


def list_drills() -> Table:
    table = Table(title="drills (./start.sh drill NAME, or all)", title_justify="left")
    table.add_column("name")
    table.add_column("the promise")
    for drill in DRILLS:
        table.add_row(drill.name, drill.promise)
    return table


def drill_command(
    settings: OpsSettings, name: str | None, show_list: bool, options: DrillOptions
) -> int:
    if show_list or name is None:
        out.print(list_drills())
        return EXIT_DONE
    if name != "all" and name not in BY_NAME:
        raise PreconditionError(
            f"no drill {name!r}; there are: {', '.join(BY_NAME)} (or all)",
            "./start.sh drill --list",
        )
    chosen = list(DRILLS) if name == "all" else [BY_NAME[name]]
    results = []
    for drill in chosen:
        out.rule(f"[bold]drill {drill.name}[/]: {drill.promise}", align="left")
        result = run_drill(drill, _say, options)
        results.append(result)
        for check in result.checks:
            mark = "[green]✓[/]" if check.held else "[red]✗[/]"
            out.print(f"{mark} {check.promise}: ", Text(check.measured), soft_wrap=True)
        if result.error:
            out.print("[red]✗[/] the drill could not finish: ", Text(result.error), soft_wrap=True)
        path = save(result, settings.reports_dir)
        verdict = "[green]PASS[/]" if result.passed else "[red]FAIL[/]"
        out.print(f"drill {drill.name} {verdict} in {result.seconds:.0f} s; saved to {path}")
    out.print(render_table(results))
    return EXIT_DONE if all(r.passed for r in results) else EXIT_GATE_FAILED
