"""Alert on anomalies in auto-executed actions, e.g. an unusual burst of updates.

Partially reversible actions run without a human, so something has to notice when they stop
looking normal. ``BurstDetector`` counts calls per action in a sliding time window and returns an
``Alert`` when one action exceeds its limit. It only observes: it never blocks the action.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Alert:
    action: str
    count: int
    window_seconds: float
    limit: int

    def __str__(self) -> str:
        return (
            f"ALERT: {self.action} ran {self.count} times in {self.window_seconds:g}s "
            f"(limit {self.limit}); a human should look at it"
        )


class BurstDetector:
    """Alert when an action runs more than ``limit`` times within ``window_seconds``."""

    def __init__(
        self,
        limit: int = 5,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if limit < 1 or window_seconds <= 0:
            raise ValueError("limit must be >= 1 and window_seconds > 0")
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._times: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()
        self.alerts: list[Alert] = []

    def observe(self, action: str) -> Alert | None:
        """Record one call; return an Alert when it makes a burst."""
        now = self._clock()
        with self._lock:
            times = self._times[action]
            times.append(now)
            while times and times[0] <= now - self.window_seconds:
                times.popleft()
            if len(times) <= self.limit:
                return None
            alert = Alert(action, len(times), self.window_seconds, self.limit)
            self.alerts.append(alert)
            return alert
