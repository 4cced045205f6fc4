"""Login throttling: a few wrong passwords a minute, then 429 with ``Retry-After``.

Failed logins are counted in a sliding window (default 60 s) under three keys: the pair
(account, client address), the account alone and the client address alone. A login is refused
before its password is even checked when any of them is over its limit:

- ``per_pair`` (5): the 6th wrong password in a row for one account from one client gets 429;
- ``per_account`` (20): an account attacked from many addresses;
- ``per_client`` (20): one address trying many accounts.

Nothing is locked for longer than the window: ``Retry-After`` is the time until the oldest
counted failure leaves it, so an attacker can slow a user down for a minute but never lock them
out for good. A successful login clears its pair's count. The counts live in memory.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ThrottleLimits:
    window_s: float = 60.0
    per_pair: int = 5
    per_account: int = 20
    per_client: int = 20


class LoginThrottle:
    """Counts failed logins; ``retry_after`` says how long a new attempt must wait (0: go ahead)."""

    def __init__(self, limits: ThrottleLimits | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or ThrottleLimits()
        self._clock = clock
        self._failures: dict[tuple[str, ...], deque[float]] = {}
        self._lock = threading.Lock()

    def _keys(self, email: str, client: str) -> list[tuple[tuple[str, ...], int]]:
        email = email.lower()
        return [
            (("pair", email, client), self.limits.per_pair),
            (("account", email), self.limits.per_account),
            (("client", client), self.limits.per_client),
        ]

    def retry_after(self, email: str, client: str) -> int:
        """Whole seconds until an attempt for ``email`` from ``client`` is allowed (0 when it is)."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key, limit in self._keys(email, client):
                times = self._expire(key, now)
                if len(times) >= limit:
                    wait = max(wait, times[len(times) - limit] + self.limits.window_s - now)
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, email: str, client: str) -> None:
        now = self._clock()
        with self._lock:
            for key, _ in self._keys(email, client):
                self._expire(key, now)
                self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, email: str, client: str) -> None:
        with self._lock:
            self._failures.pop(("pair", email.lower(), client), None)

    def _expire(self, key: tuple[str, ...], now: float) -> deque[float]:
        """The failures of ``key`` still in the window (the map keeps only keys that have some)."""
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.limits.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times
