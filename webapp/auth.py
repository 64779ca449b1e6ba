"""Signing in to a shared app: the operator's password, and failed attempts slowed down and then refused.

Gradio calls :class:`SignIn` with the name and password typed. A wrong password costs a growing delay
(0.5 s, 1 s, 2 s... up to :data:`MAX_DELAY`); after :data:`MAX_FAILURES` failures within :data:`WINDOW`
seconds, that name is refused for :data:`LOCKOUT` seconds even with the right password, and so is everyone
after :data:`MAX_FAILURES_ALL` failures from all names in the window (a guesser who changes names each time).
Gradio's auth callback is not told the caller's address, so the limits go by name and in total.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

LOGGER = logging.getLogger(__name__)
MAX_FAILURES = 5
MAX_FAILURES_ALL = 30
WINDOW = 600.0
LOCKOUT = 300.0
MAX_DELAY = 4.0


class SignIn:
    """The auth callback of a shared app: ``SignIn(password)(name, given) -> bool``."""

    def __init__(self, password: str, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.password = password
        self.clock, self.sleep = clock, sleep
        self.failures: dict[str, deque[float]] = {}
        self.all_failures: deque[float] = deque()
        self.locked_until: dict[str, float] = {}
        self.lock = threading.Lock()

    def _recent(self, times: deque[float], now: float) -> int:
        while times and now - times[0] > WINDOW:
            times.popleft()
        return len(times)

    def __call__(self, name: str, given: str) -> bool:
        """Whether ``name`` may sign in with ``given``; a failure is slowed down, many are refused a while."""
        key = (name or "").strip().lower()
        with self.lock:
            now = self.clock()
            if self.locked_until.get(key, 0.0) > now or self.locked_until.get("*", 0.0) > now:
                LOGGER.warning("sign-in refused for %r: too many failed attempts; try again later", name)
                return False
        if hmac.compare_digest(given.encode(), self.password.encode()):
            with self.lock:
                self.failures.pop(key, None)
            return True
        with self.lock:
            now = self.clock()
            mine = self.failures.setdefault(key, deque())
            mine.append(now)
            self.all_failures.append(now)
            n, total = self._recent(mine, now), self._recent(self.all_failures, now)
            if n >= MAX_FAILURES:
                self.locked_until[key] = now + LOCKOUT
            if total >= MAX_FAILURES_ALL:
                self.locked_until["*"] = now + LOCKOUT
        LOGGER.warning("failed sign-in for %r (%d in %d s)", name, n, int(WINDOW))
        self.sleep(min(MAX_DELAY, 0.5 * 2 ** (n - 1)))
        return False
