"""How often each agent was right: its recent BUY/SELL votes scored against the later close."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from market.agents import AGENT_LOOKBACK, AGENTS
from market.bars import Bars
from market.calendar import iso_ms
from market.indicators import IndicatorFrame


@dataclass(frozen=True, slots=True)
class AgentStatsResult:
    """An agent as `GET /agents` lists it, with exactly the wire fields of the contract."""

    name: str
    type: str
    status: str
    description: str
    accuracy: float
    total_signals: int
    correct_signals: int
    avg_confidence: float
    last_signal_at: str | None


def agent_stats(
    histories: list[tuple[Bars, IndicatorFrame]], horizon: int = 5, window: int = 250
) -> list[AgentStatsResult]:
    """Each agent's record over the last `window` bars of every history, in AGENTS order.

    A BUY/SELL vote at bar j counts when bar j + `horizon` exists; it is correct when that
    bar's close is above (BUY) or below (SELL) bar j's close. accuracy = correct / total x 100
    (0 with no votes); avg_confidence is over the counted votes; last_signal_at is the time of
    the latest BUY/SELL vote within the window of any history (counted or not), or None.
    """
    if horizon < 1 or window < 1:
        raise ValueError("horizon and window must be at least 1")
    count = len(AGENTS)
    total = np.zeros(count, dtype=np.int64)
    correct = np.zeros(count, dtype=np.int64)
    conf_sum = np.zeros(count, dtype=np.float64)
    last_time = np.full(count, -1, dtype=np.int64)
    for bars, ind in histories:
        n = len(bars)
        if n == 0:
            continue
        first = max(n - window, 0)
        tail = slice(max(first - AGENT_LOOKBACK, 0), n)
        tail_bars, tail_ind = bars.take(tail), ind.take(tail)
        offset = first - (tail.start or 0)
        close = tail_bars.close
        results = [spec.function(tail_bars, tail_ind) for spec in AGENTS]
        votes = np.stack([r.vote[offset:] for r in results]).astype(np.int64)
        confs = np.stack([r.confidence[offset:] for r in results])
        times = tail_bars.time[offset:]
        m = votes.shape[1]
        # Bars whose outcome `horizon` bars later is known.
        scored = max(m - horizon, 0)
        later = close[offset + horizon : offset + horizon + scored]
        now = close[offset : offset + scored]
        move = np.sign(later - now).astype(np.int64)
        cast = votes[:, :scored] != 0
        total += cast.sum(axis=1)
        correct += (cast & (votes[:, :scored] == move[None, :])).sum(axis=1)
        conf_sum += np.where(cast, confs[:, :scored], 0.0).sum(axis=1)
        any_vote = votes != 0
        has = any_vote.any(axis=1)
        latest = m - 1 - np.argmax(any_vote[:, ::-1], axis=1)
        last_time = np.where(has, np.maximum(last_time, times[latest]), last_time)
    out: list[AgentStatsResult] = []
    for a, spec in enumerate(AGENTS):
        t, c = int(total[a]), int(correct[a])
        out.append(
            AgentStatsResult(
                name=spec.name,
                type=spec.type,
                status="active",
                description=spec.description,
                accuracy=round(c / t * 100.0, 2) if t else 0.0,
                total_signals=t,
                correct_signals=c,
                avg_confidence=round(float(conf_sum[a]) / t, 2) if t else 0.0,
                last_signal_at=iso_ms(int(last_time[a])) if last_time[a] >= 0 else None,
            )
        )
    return out
