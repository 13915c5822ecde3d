"""Per-user cooldown that protects the instance from one user flooding it."""

from __future__ import annotations

import time
from collections.abc import Callable


class Cooldown:
    """Allow one generation per user every `seconds`; operators are exempt at the caller's discretion."""

    def __init__(self, *, seconds: float, clock: Callable[[], float] = time.monotonic, max_users: int = 10_000) -> None:
        self.seconds = max(0.0, seconds)
        self._clock = clock
        self._last: dict[str, float] = {}
        self._max_users = max_users

    def remaining(self, user_id: str) -> float:
        """Return seconds the user still has to wait (0 when allowed)."""
        last = self._last.get(user_id)
        if last is None or self.seconds == 0:
            return 0.0
        return max(0.0, self.seconds - (self._clock() - last))

    def hit(self, user_id: str) -> None:
        """Record a generation by the user now."""
        if self.seconds == 0:
            return
        now = self._clock()
        if len(self._last) >= self._max_users:
            self._last = {uid: t for uid, t in self._last.items() if now - t < self.seconds}
        self._last[user_id] = now

    def try_acquire(self, user_id: str) -> float:
        """Record a hit and return 0 when allowed, else return the seconds left without recording."""
        wait = self.remaining(user_id)
        if wait <= 0:
            self.hit(user_id)
        return wait

    def release(self, user_id: str) -> None:
        """Forget the user's last hit (their request was not served, e.g. the queue was full)."""
        self._last.pop(user_id, None)
