"""The bodies of `./start.sh load-data` and `./start.sh verify-data` (ops/cli.py registers them).

They turn options into a load or a verification, print the progress and the summary (or one JSON
document with `--json`), record the gate in the cutover state, and map failures to the CLI's exit
codes: 2 for a missing precondition (no database, no schema, a bad source), 1 for a failed check.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import date

from rich.table import Table
from rich.text import Text

from market.calendar import iso_ms
from ops.cli import GateFailedError, PreconditionError, Run, err, out
from ops.loader.feedback import Feedback, QuietFeedback, RichFeedback, print_report
from ops.loader.run import LoadError, LoadOptions, load, pause_after_from_env
from ops.loader.sources import SourceError, parse_symbols
from ops.loader.verify import VerifyReport, verify
from ops.state import CutoverState, gate_record

# A longer table is cut to its mismatching rows.
FULL_TABLE_SERIES = 100


@dataclass(frozen=True, slots=True)
class LoadArgs:
    """`load-data`'s command-line options, as typed."""

    source: str
    symbols: str | None
    years: int
    intraday_days: int
    seed: int | None
    asof: str | None
    adjusted: bool
    resume: bool
    as_json: bool
    workers: int | None
    connections: int


def _date(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise PreconditionError(f"{option} {text!r} is not a date: use YYYY-MM-DD") from None


def _symbols(text: str | None) -> tuple[str, ...] | None:
    try:
        return parse_symbols(text)
    except SourceError as exc:
        raise PreconditionError(f"--symbols: {exc}") from None


def _raise(exc: LoadError) -> None:
    if exc.precondition:
        raise PreconditionError(str(exc), exc.next_step) from None
    raise GateFailedError(str(exc), exc.next_step) from None


def load_data(run: Run, args: LoadArgs) -> str:
    """`load-data`: returns the one-line summary for the history, or raises a CommandError."""
    try:
        options = LoadOptions(
            source=args.source,
            symbols=_symbols(args.symbols),
            years=args.years,
            intraday_days=args.intraday_days,
            seed=args.seed,
            asof=_date(args.asof, "--asof"),
            adjusted=args.adjusted,
            resume=args.resume,
            workers=args.workers,
            connections=args.connections,
            pause_after=pause_after_from_env(),
        )
        feedback: Feedback = QuietFeedback()
        if not args.as_json and err.is_terminal:
            feedback = RichFeedback(err)
        report = load(options, feedback)
    except LoadError as exc:
        _raise(exc)
        raise  # unreachable: _raise always raises

    passed = not report.check_failures
    gate = gate_record(
        passed,
        report.message() if passed else "; ".join(report.check_failures[:3]),
        run_id=report.run_id,
        rows=report.rows,
        inserted=report.counts["inserted"],
        updated=report.counts["updated"],
        skipped=report.counts["skipped"],
        seconds=round(report.seconds, 3),
    )

    def change(state: CutoverState) -> None:
        if passed:
            state.advance("load-data")
        state.gates["data-load"] = gate

    run.update(change)
    if args.as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        print_report(out, report)
    if not passed:
        raise GateFailedError(
            "the load's checks failed:\n  " + "\n  ".join(report.check_failures[:20]),
            "./start.sh verify-data for the full picture; ./start.sh load-data again rewrites "
            "what differs",
        )
    if not args.as_json:
        out.print(Text("next: ", style="bold") + Text("./start.sh verify-data"))
    return report.message()


@dataclass(frozen=True, slots=True)
class VerifyArgs:
    symbols: str | None
    generator: bool
    as_json: bool
    seed: int | None


def _shown_time(epoch: int | None, interval: str) -> str:
    if epoch is None:
        return "-"
    text = iso_ms(epoch).replace("T", " ")
    return text[:10] if interval == "1d" else text[:16]


def verify_table(report: VerifyReport) -> Table:
    table = Table(title="verify-data", title_justify="left")
    for column in ("symbol", "interval", "run", "rows", "first", "last", "checksum", "indicators"):
        table.add_column(column)
    series = report.series
    if len(series) > FULL_TABLE_SERIES:
        series = [s for s in series if s.mismatches]
    for check in series:
        stored = check.stored
        rows = "-" if stored is None else f"{stored.rows:,}"
        checksum_bad = any("checksum" in m or "generator" in m for m in check.mismatches)
        indicator_bad = any("indicator" in m or " at " in m for m in check.mismatches)
        table.add_row(
            check.symbol,
            check.interval,
            f"#{check.run_id}",
            rows,
            _shown_time(check.recorded.first, check.interval),
            _shown_time(check.recorded.last, check.interval),
            Text("differs", style="red") if checksum_bad else Text("ok", style="green"),
            Text("differs", style="red")
            if indicator_bad
            else Text(
                f"ok ({check.indicator_values})" if check.indicator_values else "ok",
                style="green",
            ),
        )
    return table


def verify_data(run: Run, args: VerifyArgs) -> str:
    """`verify-data`: exit 0 when everything matches, 1 naming each mismatch."""
    try:
        report = verify(_symbols(args.symbols), generator=args.generator, seed=args.seed)
    except LoadError as exc:
        _raise(exc)
        raise
    passed = not report.mismatches
    gate = gate_record(
        passed,
        report.message(),
        series=len(report.series),
        mismatches=len(report.mismatches),
        indicator_values=report.indicator_values,
    )

    def change(state: CutoverState) -> None:
        if passed:
            state.advance("verify-data")
        state.gates["data-verified"] = gate

    run.update(change)
    if args.as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        out.print(verify_table(report))
        for note in [n for s in report.series for n in s.notes][:10]:
            out.print(f"[yellow]![/] {note}")
    if not passed:
        shown = report.mismatches[:25]
        more = len(report.mismatches) - len(shown)
        raise GateFailedError(
            f"{len(report.mismatches)} mismatches:\n  "
            + "\n  ".join(shown)
            + (f"\n  … and {more} more (--json lists all)" if more else ""),
            "./start.sh load-data rewrites what differs from the source",
            summary=report.message(),
        )
    if not args.as_json:
        out.print(f"[green]✓[/] {report.message()} in {report.seconds:.2f} s")
        out.print(Text("next: ", style="bold") + Text("./start.sh prod"))
    return report.message()
