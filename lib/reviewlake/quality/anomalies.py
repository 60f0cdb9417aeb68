"""Anomaly checks: this run's metric against its history in the metrics repository.

Deequ's strategies, applied to the series of the metric's earlier values (oldest first, runs
with matching tags, strictly before this run) followed by this run's value:

* ``RelativeRateOfChange(max_rate_decrease, max_rate_increase, order)``: the change
  ``x_t / x_(t-order)`` must lie within [max_rate_decrease, max_rate_increase];
* ``AbsoluteChange(max_rate_decrease, max_rate_increase, order)``: the order-th difference
  (``x_t - x_(t-1)`` for order 1) must lie within the bounds;
* ``SimpleThreshold(lower_bound, upper_bound)``: the value itself must lie within the bounds.

A missing bound is unbounded. An anomaly check is reported like any constraint (check name,
level, ``AnomalyConstraint(<analyzer>)``, Success/Failure with a message). Deequ fails an
anomaly check that has no history; here a run without enough history passes and says so
(``on_missing_history: fail`` restores Deequ's behaviour), so a pipeline's first run is not
stopped by the absence of its own past.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Mapping

from .repository import RunRecord, matching
from .results import ConstraintOutcome, java_double
from .suite import AnomalyCheck

NO_HISTORY = "no earlier run in the metrics repository to compare with"


def history_for(anomaly: AnomalyCheck, records: list[RunRecord], tags: Mapping[str, str],
                before: int) -> list[tuple[int, float]]:
    """(dataset_date, value) of the metric in earlier runs, oldest first."""
    if anomaly.with_tags == "any":
        wanted: Mapping[str, str] = {}
    elif anomaly.with_tags == "same":
        wanted = tags
    else:
        wanted = dict(anomaly.with_tags)
    a = anomaly.analyzer
    out = []
    for r in matching(records, wanted):
        if r.dataset_date >= before:
            continue
        v = r.value(a.entity, a.instance_name, a.kind)
        if v is not None:
            out.append((r.dataset_date, v))
    out.sort(key=lambda p: p[0])
    return out


def _diff(values: list[float], order: int) -> float:
    for _ in range(order):
        values = [b - a for a, b in zip(values, values[1:])]
    return values[-1]


def _divide(a: float, b: float) -> float:
    if b == 0:
        return math.nan if a == 0 else math.copysign(math.inf, a)
    return a / b


def evaluate(anomaly: AnomalyCheck, current: float | None, error: str | None,
             history: list[tuple[int, float]]) -> ConstraintOutcome:
    out = ConstraintOutcome(anomaly.name, anomaly.level, anomaly.constraint_name, "Failure",
                            method="anomaly", column=None)
    if current is None:
        out.message = error or "the metric could not be computed"
        return out
    out.value = current
    strategy = anomaly.strategy
    if strategy == "SimpleThreshold":
        lo = anomaly.param("lower_bound", -math.inf)
        hi = anomaly.param("upper_bound", math.inf)
        change, detail = current, "value"
    else:
        order = int(anomaly.param("order", 1))
        if len(history) < order:
            if anomaly.on_missing_history == "pass":
                out.status = "Success"
            out.message = (f"{NO_HISTORY} ({len(history)} earlier run"
                           f"{'' if len(history) == 1 else 's'}, order {order})")
            return out
        lo = anomaly.param("max_rate_decrease", -math.inf)
        hi = anomaly.param("max_rate_increase", math.inf)
        previous = history[-order][1]
        if strategy == "RelativeRateOfChange":
            change, detail = _divide(current, previous), "relative change"
        else:
            change = _diff([v for _, v in history[-order:]] + [current], order)
            detail = "absolute change"
        when = dt.datetime.fromtimestamp(history[-order][0] / 1000, dt.timezone.utc)
        detail += f" from {java_double(previous)} ({when:%Y-%m-%d %H:%M:%S} UTC)"
    anomalous = (not math.isnan(change)) and (change < lo or change > hi)
    if not anomalous:
        out.status = "Success"
        return out
    out.message = (f"Value: {java_double(current)} does not meet the constraint requirement! "
                   f"[{strategy}] {detail}: {java_double(change)} is not in bounds "
                   f"[{java_double(lo)}, {java_double(hi)}]")
    return out
