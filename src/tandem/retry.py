"""One retry policy for everything that retries: jobs and e-mail deliveries."""

import random
from dataclasses import dataclass
from datetime import timedelta

DEFAULT_CAP_SECONDS = 3600.0


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: base, 2 x base, 4 x base, ... up to a cap, with optional jitter.

    `jitter` spreads each delay uniformly over [delay x (1 - jitter), delay], so that jobs
    that failed together (a dependency went down) do not all come back in the same second.
    """

    max_attempts: int
    base_seconds: float
    cap_seconds: float = DEFAULT_CAP_SECONDS
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")

    def ceiling(self, attempts: int) -> float:
        """The delay before jitter after `attempts` failed attempts, in seconds."""
        exponent = min(max(attempts - 1, 0), 62)  # 2**62 x base is past any cap already
        return min(self.base_seconds * float(2**exponent), self.cap_seconds)

    def delay(self, attempts: int, rng: random.Random | None = None) -> timedelta:
        ceiling = self.ceiling(attempts)
        if self.jitter == 0.0:
            return timedelta(seconds=ceiling)
        draw = (rng or random).uniform(1.0 - self.jitter, 1.0)
        return timedelta(seconds=ceiling * draw)

    def gives_up(self, attempts: int) -> bool:
        return attempts >= self.max_attempts
