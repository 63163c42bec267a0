"""Disorder on demand: the local stack as unkind as AWS is allowed to be, from one seed.

The local stack is kinder than AWS in ways code can come to depend on without
anyone deciding to: one machine, no throttling, handlers that finish in the order
they started. ``python -m local --disorder SEED`` (``make dev DISORDER=SEED``, or
``LOCAL_DISORDER=SEED``; ``on`` picks a seed and prints it) takes those kindnesses
away, each within what AWS documents or does:

- *WebSocket messages* (``local.websocket_gateway``): each message's route handler
  is invoked after a random delay of up to ``message_jitter_seconds``, so a
  connection's requests overtake each other. On AWS every message is its own
  Lambda invocation, and API Gateway documents no order between them.
- *The events stream* (``local.stream_disorder``): a channel's records reach the
  fan-out in several batches, some after later ones.
- *@connections* (``local.connections_api``): ``connections_throttle_share`` of the
  requests are answered 429 ``LimitExceededException``, as the management API
  answers past its throttle (10,000 requests/s per account and region, shared by
  every API: API Gateway's quotas page).
- *DynamoDB*: ``dynamodb_throttle_share`` of the stack process's requests are
  refused with ``ProvisionedThroughputExceededException`` or ``ThrottlingException``
  (HTTP 400), as a hot partition or an on-demand table that has not scaled yet is.

The DynamoDB refusal is made in the stack process, by a botocore ``before-send``
hook on boto3's default session: the request never leaves, so it is certainly not
applied (a throttled DynamoDB request never is), and botocore's standard retry
mode, configured as deployed (``eventlog.log.dynamodb_client``), retries it as it
would retry DynamoDB's own refusal. Both codes are in botocore's throttling list
(``botocore.retries.standard``). Tests that open their own clients are unaffected.

Replaying: each part draws from its own ``random.Random`` seeded from the one seed,
so the same seed gives each part the same sequence of decisions (which message is
delayed how long, which request is refused). Which request meets which decision
still depends on timing between threads, so a replay reproduces the kind of run
that failed, and usually the failure, not every step of it.

The rates are deliberately modest: high enough that a few hundred requests meet
every kind of disorder, low enough that the retries configured for production
absorb them (four DynamoDB attempts fail together about once in 10**6 requests
at 3 %). A test never raises a retry cap to pass under disorder: a failure here is
a finding.
"""

from __future__ import annotations

import json
import random
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

MESSAGE_JITTER_SECONDS = 0.05
"""The longest the local gateway waits before invoking a message's route handler."""

CONNECTIONS_THROTTLE_SHARE = 0.05
"""The share of @connections requests answered 429 ``LimitExceededException``."""

DYNAMODB_THROTTLE_SHARE = 0.03
"""The share of the stack's DynamoDB requests refused as throttled, unapplied."""

DYNAMODB_THROTTLING_CODES = ("ProvisionedThroughputExceededException", "ThrottlingException")

_DYNAMODB_TARGET_PREFIX = "com.amazonaws.dynamodb.v20120810#"


@dataclass(frozen=True, kw_only=True)
class Disorder:
    """Which disorder, how much, and the seed it is all drawn from."""

    seed: int
    message_jitter_seconds: float = MESSAGE_JITTER_SECONDS
    connections_throttle_share: float = CONNECTIONS_THROTTLE_SHARE
    dynamodb_throttle_share: float = DYNAMODB_THROTTLE_SHARE

    def __post_init__(self) -> None:
        if self.message_jitter_seconds < 0:
            raise ValueError("message_jitter_seconds must not be negative")
        for name in ("connections_throttle_share", "dynamodb_throttle_share"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 0 and below 1")

    @classmethod
    def parse(cls, value: str) -> Disorder:
        """``on`` (a fresh seed) or a seed, a non-negative integer: what ``--disorder`` takes."""
        if value.strip().lower() == "on":
            return cls(seed=secrets.randbelow(1_000_000))
        try:
            seed = int(value)
        except ValueError:
            raise ValueError(
                f"--disorder takes a seed (a non-negative integer) or 'on', got {value!r}"
            ) from None
        if seed < 0:
            raise ValueError(f"--disorder takes a non-negative seed, got {seed}")
        return cls(seed=seed)

    def random(self, part: str) -> random.Random:
        """The generator of one part: its decisions depend on the seed and the part only."""
        return random.Random(f"{self.seed}/{part}")  # noqa: S311 - replayable, not secret

    def message_delay(self) -> Callable[[], float]:
        """For ``LocalWebSocketApi``: how long to hold each message before invoking its route."""
        draw = self.random("websocket")
        return lambda: draw.uniform(0, self.message_jitter_seconds)

    def connections_throttled(self) -> Callable[[], bool]:
        """For ``local.connections_api``: whether to answer this request 429."""
        draw = self.random("connections")
        return lambda: draw.random() < self.connections_throttle_share

    def stream(self, streams: Any) -> Any:
        """A DynamoDB Streams client that delivers a channel's records out of order."""
        from local.stream_disorder import DisorderedStream

        return DisorderedStream(streams, seed=self.random("stream").randrange(2**32))

    def throttle_dynamodb(self, session: Any) -> Callable[[], None]:
        """Refuse a share of the DynamoDB requests of clients ``session`` creates from now on.

        ``session`` is a botocore session (boto3's default session's ``_session``);
        returns the function that stops it.
        """
        hook = _DynamoDbThrottle(self.random("dynamodb"), self.dynamodb_throttle_share, self.seed)
        session.register("before-send.dynamodb", hook)
        return lambda: session.unregister("before-send.dynamodb", hook)

    def describe(self) -> Iterator[str]:
        """The banner's lines: what is on, and how to replay it."""
        yield (
            f"disorder       on, seed {self.seed} (replay: make dev DISORDER={self.seed}): "
            f"WebSocket messages invoked in any order (jitter up to "
            f"{self.message_jitter_seconds * 1000:.0f} ms),"
        )
        yield (
            "                 the stream in late batches, "
            f"{self.connections_throttle_share:.0%} of @connections requests 429, "
            f"{self.dynamodb_throttle_share:.0%} of DynamoDB requests throttled"
        )


class _DynamoDbThrottle:
    """A ``before-send`` handler: None lets the request go; a response stops it here."""

    def __init__(self, draw: random.Random, share: float, seed: int) -> None:
        self._draw = draw
        self._share = share
        self._seed = seed
        self.refused = 0

    def __call__(self, request: Any, **_: Any) -> Any:
        # random.Random's methods are atomic under the GIL: client threads may share it.
        if self._draw.random() >= self._share:
            return None
        from botocore.awsrequest import AWSResponse

        code = self._draw.choice(DYNAMODB_THROTTLING_CODES)
        self.refused += 1
        body = json.dumps(
            {
                "__type": _DYNAMODB_TARGET_PREFIX + code,
                "message": f"Throughput exceeds the current capacity (local disorder, seed "
                f"{self._seed}): the request was not applied",
            }
        ).encode()
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "Content-Length": str(len(body)),
            "x-amzn-RequestId": uuid.uuid4().hex,
        }
        return AWSResponse(request.url, 400, headers, _Body(body))


class _Body:
    """The little of a urllib3 response that ``AWSResponse.content`` reads."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data
