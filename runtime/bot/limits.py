"""Fair sharing: a per-user token bucket counted in images, a per-user pending cap, a global wait bound."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class TokenBucket:
    """Each user saves up to `burst` images and earns one every `seconds_per_image` (0 disables the bucket)."""

    def __init__(
        self,
        *,
        seconds_per_image: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_users: int = 10_000,
    ) -> None:
        self.seconds_per_image = max(0.0, seconds_per_image)
        self.burst = max(1, burst)
        self._clock = clock
        self._max_users = max_users
        self._levels: dict[str, tuple[float, float]] = {}

    def level(self, user_id: str) -> float:
        """Return the images the user may draw now."""
        if self.seconds_per_image == 0:
            return float(self.burst)
        tokens, stamp = self._levels.get(user_id, (float(self.burst), self._clock()))
        return min(float(self.burst), tokens + (self._clock() - stamp) / self.seconds_per_image)

    def wait_for(self, user_id: str, cost: int) -> float:
        """Return the seconds until the user can afford `cost` images (0 when they can now)."""
        missing = min(cost, self.burst) - self.level(user_id)
        return max(0.0, missing * self.seconds_per_image)

    def take(self, user_id: str, cost: int) -> None:
        """Spend `cost` images of the user's allowance."""
        if self.seconds_per_image == 0:
            return
        now = self._clock()
        if len(self._levels) >= self._max_users:  # forget users whose bucket is full again
            self._levels = {uid: v for uid, v in self._levels.items() if self.level(uid) < self.burst}
        self._levels[user_id] = (self.level(user_id) - cost, now)

    def refund(self, user_id: str, cost: int) -> None:
        """Give back images that were not drawn (busy, shutdown or failure)."""
        if self.seconds_per_image == 0 or user_id not in self._levels:
            return
        self._levels[user_id] = (min(float(self.burst), self.level(user_id) + cost), self._clock())


@dataclass(frozen=True)
class Refusal:
    """Why a request is not served now, and when it may be retried."""

    text: str
    retry_after_s: float


@dataclass
class Reservation:
    """Images admitted for one user; released once the reply is encoded."""

    user_id: str
    cost: int
    charged: bool
    released: bool = field(default=False)


def busy_text(retry_after_s: float) -> str:
    """Return the busy reply with a retry time."""
    return f"I'm busy drawing other faces right now - please try again in {math.ceil(retry_after_s)} s."


class Admission:
    """Decide at once whether `cost` images are served: user's bucket, user's pending cap, global expected wait."""

    def __init__(
        self,
        *,
        bucket: TokenBucket,
        user_max_pending: int,
        max_queue: int,
        max_wait_s: float,
        workers: int,
        seconds_per_image: Callable[[], float],
    ) -> None:
        self.bucket = bucket
        self.user_max_pending = user_max_pending
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self.workers = max(1, workers)
        self._seconds_per_image = seconds_per_image
        self.pending = 0
        self._per_user: dict[str, int] = {}

    def expected_wait_s(self, extra: int = 0) -> float:
        """Return how long `extra` more images would wait behind everything admitted (estimate)."""
        return (self.pending + extra) * self._seconds_per_image() / self.workers

    def admit(self, user_id: str, cost: int, *, exempt: bool = False) -> Reservation | Refusal:
        """Reserve `cost` images for the user, or say why not (operators are exempt from the bucket only)."""
        mine = self._per_user.get(user_id, 0)
        if mine + cost > self.user_max_pending:
            return Refusal(
                text=f"You already have {mine} faces being drawn - wait for them before asking for more.",
                retry_after_s=self.expected_wait_s(),
            )
        if not exempt:
            wait = self.bucket.wait_for(user_id, cost)
            if wait > 0:
                faces = "another face" if cost == 1 else f"{cost} more faces"
                return Refusal(text=f"Easy there! You can claim {faces} in {math.ceil(wait)} s.", retry_after_s=wait)
        # A user who already has work queued may add more only while the queue is under half its bounds:
        # the other half stays free for everyone else.
        share = 0.5 if mine > 0 else 1.0
        over_queue = self.pending + cost - self.max_queue * share
        over_wait = self.expected_wait_s(cost) - self.max_wait_s * share
        if self.pending > 0 and (over_queue > 0 or over_wait > 0):
            per_image = self._seconds_per_image() / self.workers
            retry = max(1.0, over_wait, over_queue * per_image)
            return Refusal(text=busy_text(retry), retry_after_s=retry)
        if not exempt:
            self.bucket.take(user_id, cost)
        self.pending += cost
        self._per_user[user_id] = mine + cost
        return Reservation(user_id=user_id, cost=cost, charged=not exempt)

    def release(self, reservation: Reservation, *, refund: bool = False) -> None:
        """Free the reservation's images (and give them back to the user's bucket when they were not drawn)."""
        if reservation.released:
            return
        reservation.released = True
        self.pending -= reservation.cost
        left = self._per_user.get(reservation.user_id, 0) - reservation.cost
        if left > 0:
            self._per_user[reservation.user_id] = left
        else:
            self._per_user.pop(reservation.user_id, None)
        if refund and reservation.charged:
            self.bucket.refund(reservation.user_id, reservation.cost)
