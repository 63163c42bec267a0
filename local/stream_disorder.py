"""Stream disorder on demand: a channel's records in several batches, some after later ones.

The local stream has one shard and hands records over in strict order, one page per
poll. AWS promises less: records of a transaction "might appear at different times
and could be interleaved" (DynamoDB developer guide, transactions), and a channel's
records can reach the function in separate batches and invocations. Code that
only ever saw the kind order can depend on it without knowing.

``DisorderedStream`` wraps a DynamoDB Streams client and is handed to
``LocalStreamMapping`` in its place; nothing else changes. Each record it reads is,
with probability ``hold_share``, held back for 1 to ``max_delay_polls`` polls of its
shard, so later records of the same channel are delivered first, in an earlier
invocation. The bounds:

- every record is delivered exactly once, within ``max_delay_polls`` polls of being
  read (later only if ``Limit`` records were due at once);
- within one batch, records keep stream order, as Lambda's batches from one shard do,
  so the mapping's checkpointing keeps its meaning;
- the same ``seed`` and the same stream give the same deliveries: a failure replays.

A held record waits for the next poll, so with the mapping's poll interval it
arrives up to ``max_delay_polls`` intervals late.

Part of ``python -m local --disorder SEED`` (``local.disorder``, with the other
kinds of disorder; ``make test`` runs the end-to-end suite under it too), or alone
with ``--stream-disorder SEED`` (or ``LOCAL_STREAM_DISORDER=SEED``); the banner says
so. Off by default.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class _Held:
    due: int  # the shard's poll number from which it may be delivered
    arrival: int  # stream order
    record: dict[str, Any]


class DisorderedStream:
    """``streams`` (a ``dynamodbstreams`` client), delivering records late and out of order."""

    def __init__(
        self,
        streams: Any,
        *,
        seed: int,
        max_delay_polls: int = 3,
        hold_share: float = 0.5,
    ) -> None:
        if max_delay_polls < 1 or not 0 <= hold_share <= 1:
            raise ValueError("need max_delay_polls >= 1 and 0 <= hold_share <= 1")
        self._streams = streams
        self._random = random.Random(seed)  # noqa: S311 - replayable, not secret
        self._max_delay = max_delay_polls
        self._hold_share = hold_share
        self._shard_of: dict[str, str] = {}  # an iterator handed out -> its shard
        self._held: dict[str, list[_Held]] = {}
        self._polls: dict[str, int] = {}
        self._arrivals = itertools.count()

    def describe_stream(self, **kwargs: Any) -> Any:
        return self._streams.describe_stream(**kwargs)

    def get_shard_iterator(self, **kwargs: Any) -> Any:
        response = self._streams.get_shard_iterator(**kwargs)
        self._shard_of[response["ShardIterator"]] = kwargs["ShardId"]
        return response

    def get_records(self, *, ShardIterator: str, Limit: int = 1000) -> dict[str, Any]:
        """One poll of a shard: what is due, held records and this page's, in stream order."""
        shard = self._shard_of.pop(ShardIterator, ShardIterator)
        page = self._streams.get_records(ShardIterator=ShardIterator, Limit=Limit)
        poll = self._polls[shard] = self._polls.get(shard, 0) + 1
        held = self._held.setdefault(shard, [])
        for record in page.get("Records", []):
            late = self._random.random() < self._hold_share
            delay = self._random.randint(1, self._max_delay) if late else 0
            held.append(_Held(due=poll + delay, arrival=next(self._arrivals), record=record))
        next_iterator = page.get("NextShardIterator")
        if next_iterator is None:
            due = list(held)  # the shard is closed: nothing may stay behind
        else:
            self._shard_of[next_iterator] = shard
            due = sorted((h for h in held if h.due <= poll), key=lambda h: h.arrival)[:Limit]
        released = {h.arrival for h in due}
        held[:] = [h for h in held if h.arrival not in released]
        return {**page, "Records": [h.record for h in due], "NextShardIterator": next_iterator}
