"""One retry policy for every call the sync makes to Zuora and Salesforce.

A call that failed transiently (a ``429``, a ``5xx``, a dropped connection) is tried again after a
wait: the server's ``Retry-After`` when it gives one, else an exponential backoff with jitter, so
that many workers that failed together do not come back together. A ``Retry-After`` longer than
the policy waits out (an hourly or daily limit) ends the call at once: blocking a worker that long
helps nobody, and the task's own retry comes later. The rules per API are in
``docs/operations.md`` ("Retries").
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import random
from dataclasses import dataclass

__all__ = ["SALESFORCE", "ZUORA", "RetryAfterTooLong", "RetryPolicy", "parse_retry_after"]


class RetryAfterTooLong(Exception):
    """The server asked for a longer wait than the policy waits out.

    :param seconds: the wait the server asked for.
    :param longest: the longest wait the policy accepts.
    """

    def __init__(self, seconds: float, longest: float):
        super().__init__(f"Retry-After {seconds:.0f} s is longer than the {longest:.0f} s this client waits")
        self.seconds = seconds
        self.longest = longest


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before trying a failed call again.

    :param retries: tries after the first one.
    :param base: seconds before the first retry when the server gives no ``Retry-After``; each
        further retry doubles it.
    :param cap: longest computed backoff, seconds.
    :param longest_retry_after: longest ``Retry-After`` waited out, seconds; a longer one raises
        :class:`RetryAfterTooLong`.
    :param jitter: the random share of a computed backoff (``0.5``: between half and all of it).
    """

    retries: int = 4
    base: float = 0.5
    cap: float = 8.0
    longest_retry_after: float = 300.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.retries < 0 or self.base <= 0 or self.cap < self.base or not 0 <= self.jitter <= 1:
            raise ValueError(f"invalid retry policy {self!r}: retries >= 0, 0 < base <= cap, 0 <= jitter <= 1")

    def allows(self, attempt: int) -> bool:
        """Whether a call whose ``attempt``-th try (from 0) failed may be tried again."""
        return attempt < self.retries

    def backoff(self, attempt: int) -> float:
        """The computed wait after the ``attempt``-th failed try (from 0)."""
        ceiling = min(self.cap, self.base * (2 ** attempt))
        return ceiling * (1 - self.jitter) + random.uniform(0, ceiling * self.jitter)

    def wait(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before the next try: the server's ``Retry-After`` (plus up to a second
        of jitter) when given, else :meth:`backoff`.

        :raises RetryAfterTooLong: ``retry_after`` exceeds ``longest_retry_after``.
        """
        if retry_after is None:
            return self.backoff(attempt)
        if retry_after > self.longest_retry_after:
            raise RetryAfterTooLong(retry_after, self.longest_retry_after)
        return retry_after + random.uniform(0, min(1.0, self.base))

    def with_(self, **changes: float) -> RetryPolicy:
        """This policy with some fields changed (``None`` values are ignored)."""
        fields = {k: v for k, v in changes.items() if v is not None}
        return RetryPolicy(**{**self.__dict__, **fields})


#: Zuora: its concurrency and rate limits answer 429 with ``Retry-After``; waits of up to 15
#: minutes are worth sitting out, longer ones are daily limits.
ZUORA = RetryPolicy(retries=6, base=1.0, cap=60.0, longest_retry_after=900.0)

#: Salesforce: transient 5xx and dropped connections are short; its daily limit is a ``403``,
#: never retried (the loader stops the session cleanly instead).
SALESFORCE = RetryPolicy(retries=4, base=0.5, cap=8.0, longest_retry_after=300.0)


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` (or ``RateLimit-Reset``) header asks for: a number of seconds or
    an HTTP date (RFC 9110 §10.2.3); ``None`` when absent or unreadable, never negative.

    >>> parse_retry_after("7")
    7.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=dt.datetime(2015, 10, 21, 7, 28, tzinfo=dt.UTC))
    10.0
    >>> parse_retry_after("soon") is None
    True
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if not math.isnan(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max((when - (now or dt.datetime.now(dt.UTC))).total_seconds(), 0.0)
