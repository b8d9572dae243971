"""geetcd.config: immutable Retry, stateless backoff strategies, TLS settings."""

from __future__ import annotations

import dataclasses
import random

import pytest

from geetcd import TLS, ConstantBackoff, ExponentialBackoff, NoBackoff, Retry
from geetcd.config import RetryExhausted
from geetcd.errors import ConnectionFailed, ConnectionLost


# ---------------------------------------------------------------------------- Retry
def test_retry_defaults() -> None:
    retry = Retry()
    assert retry.attempts == 8
    assert retry.history == ()
    assert retry.count == 0
    assert isinstance(retry.backoff, ExponentialBackoff)


def test_increment_returns_a_new_object_and_leaves_the_old_one_alone() -> None:
    first = Retry(attempts=3)
    error = ConnectionFailed("refused")
    second = first.increment(error)
    assert second is not first
    assert first.history == () and first.count == 0
    assert second.history == (error,) and second.count == 1
    assert second.attempts == 3 and second.backoff is first.backoff


def test_history_keeps_errors_oldest_first() -> None:
    errors = [ConnectionFailed("a"), ConnectionLost("b"), ConnectionFailed("c")]
    retry = Retry(attempts=5)
    seen = [retry]
    for error in errors:
        retry = retry.increment(error)
        seen.append(retry)
    assert retry.history == tuple(errors)
    assert [r.count for r in seen] == [0, 1, 2, 3]
    # every intermediate object still holds its own history
    assert seen[1].history == (errors[0],)
    assert seen[2].history == (errors[0], errors[1])


def test_exhaustion_after_exactly_attempts_retries() -> None:
    retry = Retry(attempts=2)
    retry = retry.increment(ConnectionFailed("1"))
    retry = retry.increment(ConnectionFailed("2"))
    with pytest.raises(RetryExhausted):
        retry.increment(ConnectionFailed("3"))
    assert retry.count == 2  # the exhausted object is unchanged


def test_retry_none_never_retries() -> None:
    retry = Retry.none()
    assert retry.attempts == 0
    assert isinstance(retry.backoff, NoBackoff)
    with pytest.raises(RetryExhausted):
        retry.increment(ConnectionFailed("x"))


def test_retry_is_frozen() -> None:
    retry = Retry()
    with pytest.raises(dataclasses.FrozenInstanceError):
        retry.attempts = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        retry.history = ()  # type: ignore[misc]


@pytest.mark.parametrize("attempts", ["3", 2.0, True, None])
def test_retry_attempts_must_be_an_int(attempts: object) -> None:
    with pytest.raises(TypeError):
        Retry(attempts=attempts)  # type: ignore[arg-type]


def test_retry_attempts_must_not_be_negative() -> None:
    with pytest.raises(ValueError):
        Retry(attempts=-1)


def test_retry_delay_follows_its_backoff() -> None:
    retry = Retry(attempts=5, backoff=ExponentialBackoff(base=0.1, cap=10, jitter=False))
    delays = []
    for _ in range(4):
        retry = retry.increment(ConnectionFailed("x"))
        delays.append(retry.delay())
    assert delays == [0.1, 0.2, 0.4, 0.8]
    assert Retry(backoff=ConstantBackoff(0.3)).delay() == 0.3
    assert Retry.none().delay() == 0.0


# ---------------------------------------------------------------------------- backoff
def test_no_and_constant_backoff() -> None:
    for attempt in (0, 1, 2, 50, 10_000):
        assert NoBackoff().compute(attempt) == 0.0
        assert ConstantBackoff(0.25).compute(attempt) == 0.25
    assert ConstantBackoff().delay == 0.05


def test_exponential_backoff_without_jitter_doubles_up_to_the_cap() -> None:
    backoff = ExponentialBackoff(base=0.025, cap=2.0, jitter=False)
    assert [backoff.compute(a) for a in range(1, 10)] == [
        0.025,
        0.05,
        0.1,
        0.2,
        0.4,
        0.8,
        1.6,
        2.0,
        2.0,
    ]
    assert backoff.compute(0) == 0.025  # attempt numbers below 1 act as the first


def test_exponential_backoff_with_jitter_stays_within_half_and_full_delay() -> None:
    random.seed(42)
    backoff = ExponentialBackoff(base=0.025, cap=2.0)
    plain = ExponentialBackoff(base=0.025, cap=2.0, jitter=False)
    for attempt in range(1, 20):
        full = plain.compute(attempt)
        samples = [backoff.compute(attempt) for _ in range(200)]
        assert all(full / 2 <= s <= full for s in samples), attempt
        assert max(samples) <= 2.0
        assert len(set(samples)) > 1  # jitter actually spreads


def test_exponential_backoff_is_capped_for_any_attempt_number() -> None:
    # A member that stays down is probed for as long as it is down: its failure count
    # (the attempt number) grows without bound, so compute() must never overflow.
    backoff = ExponentialBackoff(base=0.1, cap=2.0)
    plain = ExponentialBackoff(base=0.1, cap=2.0, jitter=False)
    for attempt in (60, 1023, 1024, 1100, 5000, 10**6):
        assert plain.compute(attempt) == 2.0
        assert 1.0 <= backoff.compute(attempt) <= 2.0


def test_backoffs_are_frozen_and_stateless() -> None:
    backoff = ExponentialBackoff(jitter=False)
    assert backoff.compute(3) == backoff.compute(3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        backoff.base = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ConstantBackoff().delay = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------------------- TLS
def test_tls_defaults_verify() -> None:
    tls = TLS()
    assert tls.verify is True
    assert tls.ca_file is None and tls.cert_file is None and tls.key_file is None


def test_tls_key_without_cert_is_refused() -> None:
    with pytest.raises(ValueError):
        TLS(key_file="client.key")
    assert TLS(cert_file="client.pem").key_file is None  # a combined cert+key file is fine


def test_tls_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TLS().verify = False  # type: ignore[misc]
