"""What the operator sees while `load-data` runs and when it ends: progress bars per symbol and
overall (with rows/s) on a terminal, then a summary table and the problems found.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from ops.loader.rows import Problem
    from ops.loader.run import LoadReport

# Problems shown on screen; all of them are in --json and in load_runs.problems.
SHOWN_PROBLEMS = 30


class Feedback(Protocol):
    """Progress events of a load, in the order they happen."""

    def start(self, symbols: int, already_done: int) -> None: ...

    def symbol_started(self, symbol: str, rows: int) -> None: ...

    def symbol_written(self, symbol: str) -> None: ...

    def symbol_done(self, symbol: str, rows: int) -> None: ...

    def stop(self) -> None: ...


class QuietFeedback:
    """No progress output (JSON mode, a pipe, tests)."""

    def start(self, symbols: int, already_done: int) -> None:
        pass

    def symbol_started(self, symbol: str, rows: int) -> None:
        pass

    def symbol_written(self, symbol: str) -> None:
        pass

    def symbol_done(self, symbol: str, rows: int) -> None:
        pass

    def stop(self) -> None:
        pass


class _RowsColumn(ProgressColumn):
    """Overall: `symbols done/all · rows · rows/s`; a symbol: `rows · what it is doing`."""

    def render(self, task: Task) -> Text:
        rows = int(task.fields.get("rows", 0))
        phase = task.fields.get("phase")
        if phase is not None:
            return Text(f"{rows:>10,} rows · {phase}", style="dim")
        elapsed = time.perf_counter() - float(task.fields.get("since", time.perf_counter()))
        rate = rows / elapsed if elapsed > 0 else 0.0
        done = f"{task.completed:.0f}/{task.total or 0:.0f} symbols"
        return Text(f"{done:>16} {rows:>10,} rows · {rate:>9,.0f} rows/s", style="cyan")


class RichFeedback:
    """Progress bars on a terminal: one overall (symbols, rows, rows/s) and one per symbol being
    written (staged, then upserted)."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<14}"),
            BarColumn(bar_width=30),
            _RowsColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.overall: TaskID | None = None
        self.symbols: dict[str, TaskID] = {}
        self.rows = 0
        self.running = False

    def start(self, symbols: int, already_done: int) -> None:
        self.progress.start()
        self.running = True
        self.overall = self.progress.add_task(
            "all symbols",
            total=symbols,
            completed=already_done,
            rows=0,
            since=time.perf_counter(),
        )

    def symbol_started(self, symbol: str, rows: int) -> None:
        if not self.running:
            return
        self.symbols[symbol] = self.progress.add_task(
            f"  {symbol}", total=2, rows=rows, phase="COPY into staging"
        )

    def symbol_written(self, symbol: str) -> None:
        task = self.symbols.get(symbol)
        if task is not None and self.running:
            self.progress.update(task, completed=1, phase="upserted, recording")

    def symbol_done(self, symbol: str, rows: int) -> None:
        if not self.running:
            return
        task = self.symbols.pop(symbol, None)
        if task is not None:
            self.progress.remove_task(task)
        self.rows += rows
        if self.overall is not None:
            self.progress.update(self.overall, advance=1, rows=self.rows)

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.progress.stop()


def summary_table(report: LoadReport) -> Table:
    c = report.counts
    title = f"load run #{report.run_id} · {report.source.kind}"
    if report.source.detail:
        title += f" {report.source.detail}"
    if report.source.seed is not None:
        title += f" · seed {report.source.seed}"
    title += f" · as of {report.window.asof} · adjusted {str(report.source.adjusted).lower()}"
    table = Table(title=title, title_justify="left")
    columns = (
        "symbols",
        "daily rows",
        "intraday rows",
        "inserted",
        "updated",
        "unchanged",
        "skipped",
        "seconds",
        "rows/s",
    )
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(
        f"{c['symbols']:,}",
        f"{c['daily_rows']:,}",
        f"{c['intraday_rows']:,}",
        f"{c['inserted']:,}",
        f"{c['updated']:,}",
        f"{c['unchanged']:,}",
        f"{c['skipped']:,}",
        f"{report.seconds:.2f}",
        f"{report.rows_per_second:,.0f}",
    )
    return table


def problems_table(problems: list[Problem], limit: int = SHOWN_PROBLEMS) -> Table:
    table = Table(title="bad rows and files (skipped)", title_justify="left")
    for column in ("file", "line", "symbol", "problem", "detail"):
        table.add_column(column)
    for problem in problems[:limit]:
        table.add_row(
            problem.file or "-",
            "-" if problem.line is None else str(problem.line),
            problem.symbol or "-",
            problem.kind,
            problem.detail,
        )
    return table


def print_report(console: Console, report: LoadReport) -> None:
    """The summary table, the problems, the cache note and the outcome line."""
    window = report.window
    console.print(summary_table(report))
    intraday = (
        f"5-minute bars of the {window.intraday_days} days to {window.asof}"
        if window.intraday_days > 0
        else "no 5-minute bars"
    )
    console.print(
        f"  daily bars {window.daily_from} → {window.asof} · {intraday} · "
        f"indicators {report.counts['indicators_inserted']:,} inserted, "
        f"{report.counts['indicators_updated']:,} updated"
    )
    if report.problems:
        console.print(problems_table(report.problems))
        if len(report.problems) > SHOWN_PROBLEMS:
            console.print(
                f"  … {len(report.problems) - SHOWN_PROBLEMS} more: --json, or load_runs.problems "
                f"of run #{report.run_id}"
            )
    if report.cache.warning:
        console.print(f"[yellow]![/] {report.cache.warning}", soft_wrap=True)
    else:
        console.print(f"  cache: {report.cache.deleted} cached market-data keys invalidated")
    mark = "[green]✓[/]" if not report.check_failures else "[red]✗[/]"
    console.print(f"{mark} {report.message()}", soft_wrap=True)
