"""The WebSocket transport: stateful at the edge, stateless in the handlers.

API Gateway holds the sockets. The connections table remembers who is
connected and who listens to which channel. Every frame the server sends is one
``post_to_connection``. Nothing lives in a function between two invocations
except caches.

- ``routes``: one Lambda entry point per route (``$connect``, ``$disconnect``,
  ``subscribe``, ``unsubscribe``, ``publish``, ``read``, ``ping``, ``$default``).
- ``authorizer``: the ``$connect`` Lambda REQUEST authorizer (``?token=``); the
  routes check each subscribe and publish against the claims it returns.
- ``fanout``: the events table's stream -> each channel's subscribers.
- ``frames``: client and server frames, pure.
- ``connections``: the connections table, its design and access patterns.
- ``management``: the @connections API client and its retry policy.
- ``config``: environment variable names and fan-out tuning.

Decisions the contract leaves open, written down here:

- Replies are posted, never returned as route responses (see ``management``).
- ``unsubscribe`` is acknowledged with ``{"type": "unsubscribed", "channel": c}``
  and is idempotent. Clients ignore frame types they do not know.
- A channel's events may arrive before its ``subscribed`` frame, and some twice
  (backlog and live overlap): clients drop duplicates by ``seq`` (``routes``
  explains why nothing can be missed).
- ``"after": null`` means the same as no cursor: live only, from the head.
- ``publish`` needs a ``data`` field (``null`` is a value); without one the reply
  is ``invalid_data``.
- Auth refusals after the handshake are ``error`` frames, ``forbidden`` (scope not
  granted) or ``unauthorized`` (token expired since the connect); the connection
  stays open.
- Error codes beyond ``eventlog.errors``: ``bad_json`` (not JSON),
  ``invalid_frame`` (JSON but not an object), ``unknown_action``, and
  ``internal_error`` for server faults.
- A client frame over 32 KB never reaches a handler: API Gateway closes the
  connection with 1009 (and binary frames with 1003). A ``publish`` therefore
  has a little less room for ``data`` than the 32 KiB encoded-event limit, which
  is what the ``event_too_large`` error enforces for frames that do arrive.
- A subscription lasts until ``unsubscribe``, ``$disconnect`` or the end of its
  connection (at most 2 h); subscribing again to the same channel replaces it
  and sends a new ``subscribed`` and backlog.
"""
