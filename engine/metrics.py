"""Process-wide counters and timings, rendered in Prometheus' text format (``/metrics``).

Deliberately tiny: a handful of counters (agent requests, jobs run), and one summary of
wake latencies (a write committed by one process until a waiter in another is woken).
Gauges that are read from the database (jobs queued, runs per state) are handed in by
whoever renders the page.

Example:
    >>> m = Metrics()
    >>> m.count("slipstream_agent_requests_total", method="GET")
    >>> m.observe("slipstream_wake_latency_seconds", 0.004)
    >>> print(m.render({"slipstream_runs": {(("state", "Ready"),): 2.0}}), end="")
    # TYPE slipstream_agent_requests_total counter
    slipstream_agent_requests_total{method="GET"} 1
    # TYPE slipstream_wake_latency_seconds summary
    slipstream_wake_latency_seconds_count 1
    slipstream_wake_latency_seconds_sum 0.004
    slipstream_wake_latency_seconds_max 0.004
    # TYPE slipstream_runs gauge
    slipstream_runs{state="Ready"} 2
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

Labels = tuple[tuple[str, str], ...]


class Metrics:
    """Counters and summaries of one process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = {}
        self._summaries: dict[str, list[float]] = {}  # name → [count, sum, max]

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[key] = series.get(key, 0.0) + amount

    def observe(self, name: str, value: float) -> None:
        with self._lock:
            found = self._summaries.setdefault(name, [0.0, 0.0, 0.0])
            found[0] += 1
            found[1] += value
            found[2] = max(found[2], value)

    def summary(self, name: str) -> tuple[int, float, float]:
        """(count, sum, max) of a summary."""
        with self._lock:
            count, total, most = self._summaries.get(name, [0.0, 0.0, 0.0])
        return int(count), total, most

    def render(self, gauges: Mapping[str, Mapping[Labels, float]] | None = None) -> str:
        """The Prometheus text exposition of everything, plus ``gauges``."""
        lines: list[str] = []
        with self._lock:
            for name, series in sorted(self._counters.items()):
                lines.append(f"# TYPE {name} counter")
                lines += [f"{name}{_labels(k)} {_num(v)}" for k, v in sorted(series.items())]
            for name, (count, total, most) in sorted(self._summaries.items()):
                lines.append(f"# TYPE {name} summary")
                lines.append(f"{name}_count {_num(count)}")
                lines.append(f"{name}_sum {_num(total)}")
                lines.append(f"{name}_max {_num(most)}")
        for name, gauge in sorted((gauges or {}).items()):
            lines.append(f"# TYPE {name} gauge")
            lines += [f"{name}{_labels(k)} {_num(v)}" for k, v in sorted(gauge.items())]
        return "\n".join(lines) + "\n"


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels
    )
    return "{" + inner + "}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(round(value, 6))


#: The process's metrics.
METRICS = Metrics()
