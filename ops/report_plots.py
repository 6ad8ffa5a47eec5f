"""The report's plots as SVG text (matplotlib, Agg backend): the canary's intervals against its
thresholds, and the load test's latency over time (or per step of a knee search).

SVG rather than PNG so the HTML stays self-contained and small, and its text stays text.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CanaryPoint:
    """One analysed interval, `t` in seconds from the first one."""

    t: float
    weight: float | None
    p95_ms: float | None
    success_rate: float | None
    verdict: str
    mock_p95_ms: float | None = None


@dataclass(frozen=True, slots=True)
class LatencySeries:
    """One target's latency over the measured window (or per step: x is the asked rate)."""

    name: str
    x: list[float]
    p50: list[float]
    p95: list[float]
    p99: list[float]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text, not paths
    matplotlib.rcParams["svg.hashsalt"] = "cutover-report"  # stable ids between runs
    import matplotlib.pyplot as plt

    return plt


def _svg(figure: Any) -> str:
    plt = _pyplot()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    # Inline in HTML: no XML prolog, no DOCTYPE, no fixed size in pt (CSS scales it).
    text = re.sub(r"<\?xml[^>]*\?>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text, flags=re.S)
    return text.strip()


def canary_plot(points: Sequence[CanaryPoint], p95_ms: float, success_rate: float) -> str:
    """p95 and success rate per interval against the thresholds, with the weight as a step line."""
    plt = _pyplot()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    t = [p.t for p in points]
    breach = [p for p in points if p.verdict in ("breach", "dry-run-breach")]
    p95 = [float("nan") if p.p95_ms is None else p.p95_ms for p in points]
    top.plot(t, p95, "o-", color="C0", markersize=3, label="prod p95 (ms)")
    if any(p.mock_p95_ms is not None for p in points):
        mock = [float("nan") if p.mock_p95_ms is None else p.mock_p95_ms for p in points]
        top.plot(t, mock, ":", color="C1", label="mock p95 (ms), same interval")
    top.axhline(p95_ms, color="red", linestyle="--", linewidth=1, label=f"p95 gate {p95_ms:g} ms")
    top.set_ylabel("p95 latency (ms)")
    top.set_title("canary: prod's share, interval by interval")
    success = [float("nan") if p.success_rate is None else p.success_rate * 100 for p in points]
    bottom.plot(t, success, "o-", color="C2", markersize=3, label="prod success rate (%)")
    bottom.axhline(
        success_rate * 100,
        color="red",
        linestyle="--",
        linewidth=1,
        label=f"success gate {success_rate:.2%}",
    )
    bottom.set_ylabel("success rate (%)")
    bottom.set_xlabel("seconds since the first interval")
    for axis in (top, bottom):
        for index, point in enumerate(breach):
            # A breach is the interval's, whichever gate it broke: marked on both panels.
            axis.axvline(
                point.t,
                color="red",
                alpha=0.25,
                linewidth=6,
                label="breach" if index == 0 else None,
            )
        weights = axis.twinx()
        weights.step(
            t,
            [float("nan") if p.weight is None else p.weight for p in points],
            where="post",
            color="grey",
            alpha=0.6,
            label="weight (%)",
        )
        weights.set_ylim(-5, 105)
        weights.set_ylabel("weight to prod (%)", color="grey")
        handles, labels = axis.get_legend_handles_labels()
        more, more_labels = weights.get_legend_handles_labels()
        axis.legend(handles + more, labels + more_labels, fontsize="small", loc="best")
    return _svg(figure)


def latency_plot(series: Sequence[LatencySeries], p95_ms: float | None, knee: bool) -> str:
    """p50/p95/p99 per target: over seconds of the run, or per step of a knee search."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(10, 4.5))
    for index, item in enumerate(series):
        lines = ((item.p50, ":", "p50"), (item.p95, "-", "p95"), (item.p99, "--", "p99"))
        for values, style, label in lines:
            if values:
                axis.plot(item.x, values, style, color=f"C{index}", label=f"{item.name} {label}")
    if p95_ms is not None:
        axis.axhline(p95_ms, color="red", linewidth=0.8, label=f"p95 gate {p95_ms:g} ms")
    axis.set_xlabel("asked rate (req/s)" if knee else "seconds into the measured window")
    axis.set_ylabel("latency (ms)")
    axis.set_title("load test latency" + (" per step of the knee search" if knee else ""))
    axis.legend(fontsize="small")
    return _svg(figure)
