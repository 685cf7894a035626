"""The retry policy: exponential backoff with jitter, capped, and an attempt budget."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tandem.retry import RetryPolicy


@pytest.mark.parametrize(
    ("attempts", "seconds"),
    [
        pytest.param(0, 2.0, id="before-any-failure"),
        pytest.param(1, 2.0, id="after-first"),
        pytest.param(2, 4.0, id="after-second"),
        pytest.param(3, 8.0, id="after-third"),
        pytest.param(10, 60.0, id="capped"),
        pytest.param(10_000, 60.0, id="huge-still-capped"),
    ],
)
def test_ceiling_doubles_up_to_the_cap(attempts: int, seconds: float) -> None:
    policy = RetryPolicy(max_attempts=5, base_seconds=2, cap_seconds=60)
    assert policy.ceiling(attempts) == seconds
    assert policy.delay(attempts).total_seconds() == seconds  # no jitter: exactly the ceiling


@given(
    attempts=st.integers(min_value=1, max_value=200),
    base=st.floats(min_value=0.01, max_value=100),
    jitter=st.floats(min_value=0, max_value=1),
    seed=st.integers(),
)
def test_jittered_delay_stays_within_its_bounds(
    attempts: int, base: float, jitter: float, seed: int
) -> None:
    policy = RetryPolicy(max_attempts=3, base_seconds=base, cap_seconds=3600, jitter=jitter)
    delay = policy.delay(attempts, random.Random(seed)).total_seconds()
    ceiling = policy.ceiling(attempts)
    assert ceiling * (1 - jitter) - 1e-6 <= delay <= ceiling + 1e-6
    assert delay <= 3600 + 1e-6


def test_jitter_spreads_delays() -> None:
    policy = RetryPolicy(max_attempts=3, base_seconds=10, jitter=0.5)
    rng = random.Random(7)
    delays = {policy.delay(3, rng).total_seconds() for _ in range(50)}
    assert len(delays) > 40
    assert min(delays) >= 20
    assert max(delays) <= 40


@pytest.mark.parametrize(
    ("attempts", "gives_up"),
    [pytest.param(2, False, id="budget-left"), pytest.param(3, True, id="budget-spent")],
)
def test_attempt_budget(attempts: int, gives_up: bool) -> None:
    assert RetryPolicy(max_attempts=3, base_seconds=1).gives_up(attempts) is gives_up


@pytest.mark.parametrize(
    "jitter", [pytest.param(-0.1, id="negative"), pytest.param(1.5, id="over-one")]
)
def test_jitter_outside_zero_to_one_is_refused(jitter: float) -> None:
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(max_attempts=1, base_seconds=1, jitter=jitter)
