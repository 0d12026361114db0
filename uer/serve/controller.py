"""Speed that follows the load: raise FastBERT's speed when the latency target is threatened,
lower it again when the load falls.

The signal is what the clients feel: the latency of recent requests (its 90th percentile over
the last ``interval``) and the rows queued but not yet started. Every ``interval`` seconds:

- p90 above ``high`` x target, or more rows queued than one batch drains: speed += ``step``;
- p90 below ``low`` x target and nothing queued: speed -= ``step``;
- otherwise it stays. Always within [floor, ceiling].

Raising early (at 80% of the target) matters more than lowering early: a queue grows without
bound once arrivals exceed the service rate, while a speed a little too high for a while costs
only some accuracy. The gap between ``high`` and ``low`` keeps the speed from oscillating.
Without a target the speed stays at the floor (:class:`FixedSpeed`).
"""
from __future__ import annotations

import threading
import time
from typing import Callable


class FixedSpeed:
    def __init__(self, speed: float) -> None:
        self.speed = speed

    def observe(self, latency_s: float) -> None:
        pass

    def update(self, queued_rows: int, now: float | None = None) -> float:
        return self.speed


class SpeedController:
    """Example::

        ctl = SpeedController(floor=0.0, ceiling=0.8, target_s=0.05, batch=32)
        ctl.observe(0.07)                  # a request took 70 ms
        speed = ctl.update(queued_rows=40)  # at most once per interval it moves; returns the speed now
    """

    def __init__(self, floor: float, ceiling: float, target_s: float, batch: int, step: float = 0.05,
                 interval: float = 0.2, high: float = 0.8, low: float = 0.4,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0.0 <= floor <= ceiling <= 1.0:
            raise ValueError(f"speed bounds must satisfy 0 <= floor <= ceiling <= 1, got {floor} and {ceiling}")
        if target_s <= 0:
            raise ValueError(f"the latency target must be > 0, got {target_s}")
        self.floor, self.ceiling, self.target = floor, ceiling, target_s
        self.batch, self.step, self.interval, self.high, self.low = batch, step, interval, high, low
        self.clock = clock
        self.speed = floor
        self._latencies: list[float] = []
        self._last = clock()
        self._lock = threading.Lock()  # observe() comes from the server's loop, update() from anywhere

    def observe(self, latency_s: float) -> None:
        with self._lock:
            self._latencies.append(latency_s)

    def update(self, queued_rows: int, now: float | None = None) -> float:
        now = self.clock() if now is None else now
        with self._lock:
            if now - self._last < self.interval:
                return self.speed
            self._last = now
            recent, self._latencies = sorted(self._latencies), []
        p90 = recent[int(0.9 * (len(recent) - 1))] if recent else None
        if (p90 is not None and p90 > self.high * self.target) or queued_rows > self.batch:
            self.speed = min(self.ceiling, round(self.speed + self.step, 6))
        elif (p90 is None or p90 < self.low * self.target) and queued_rows == 0:
            self.speed = max(self.floor, round(self.speed - self.step, 6))
        return self.speed
