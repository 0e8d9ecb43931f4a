"""Calls to AWS APIs with account-wide rate limits: a client-side token bucket, and retries with jittered
exponential backoff while AWS answers "too fast" (botocore's own adaptive retries come first; this is what
happens when they run out)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from panopipe.errors import ConfigError, EndpointUnreachableError, PanopipeError
from panopipe.storage.aws_clients import is_endpoint_unreachable, is_transient_aws_error

T = TypeVar("T")


class RateLimiter:
    """A token bucket: at most ``rate`` calls per second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int = 1, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Wait until a call may be made."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait:
            sleep(wait)


def call_aws(
    what: str,
    call: Callable[[], T],
    *,
    limiter: RateLimiter | None = None,
    attempts: int = 8,
    base_s: float = 0.25,
    cap_s: float = 20.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()``, retried with full-jitter exponential backoff (``base_s`` doubling, at most ``cap_s``) while
    AWS throttles it or fails on its side. A refusal (a missing queue, a denial) is a :class:`ConfigError`;
    an endpoint that cannot be reached after botocore's own retries an :class:`EndpointUnreachableError` at
    once, not throttling; throttling that outlasts ``attempts`` a :class:`PanopipeError`; each names ``what``
    was called."""
    from botocore.exceptions import BotoCoreError, ClientError

    for attempt in range(1, attempts + 1):
        if limiter is not None:
            limiter.acquire(sleep)
        try:
            return call()
        except (ClientError, BotoCoreError) as exc:
            if is_endpoint_unreachable(exc):
                service = what.partition(":")[0].upper()
                raise EndpointUnreachableError(
                    f"cannot reach AWS for {what}: {exc}: check the network, the region and "
                    f"AWS_ENDPOINT_URL_{service} (or AWS_ENDPOINT_URL) if set"
                ) from None
            if not is_transient_aws_error(exc):
                raise ConfigError(f"AWS refused {what}: {exc}") from None
            if attempt == attempts:
                raise PanopipeError(f"AWS kept refusing {what} ({attempts} attempts): {exc}") from None
            sleep(random.uniform(0, min(cap_s, base_s * 2**attempt)))
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


__all__ = ["RateLimiter", "call_aws"]
