"""``python -m client``: publish and subscribe from a shell, over any transport.

::

    python -m client publish news '{"hello": "world"}'         # prints the Event JSON
    python -m client subscribe news --transport sse --after 0  # one Event JSON per line
    python -m client subscribe news --transport websocket --count 3
    python -m client token --channel 'news*' --scope subscribe --ttl 1h  # a development token

The endpoints come from ``--endpoints`` (default ``.local/outputs.json``, which the
local stack writes; ``make deploy`` writes ``.local/deployed-outputs.json``).

Tokens: ``--token`` sends the given one. Without it, against the local stack (its
endpoints file has ``LocalDevTokenUrl``), ``publish`` and ``subscribe`` ask the stack
for a development token with just the scope they need on just their channel, and
renew it before it expires. ``token`` prints a development token signed with the
local stack's secret file (``.local/dev-secret``), which works while the stack is
down; it is for development only: a deployment's tokens come from your backend or
your identity provider.

Exit status: 0 done; 1 the service refused or could not be reached; 2 bad usage
(invalid channel, data that is not JSON, no endpoints file); 130 interrupted.
Events go to standard output, everything else to standard error, so the output
pipes into ``jq``. A reset (history older than the cursor is gone) is reported on
standard error, and the subscription continues.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from auth.claims import SCOPES, InvalidClaims, Scope, parse_grants
from auth.config import DEFAULT_TOKEN_TTL_SECONDS
from auth.tokens import issue_token, parse_ttl
from client.auth import TokenSource, dev_tokens_for
from client.base import TRANSIENT_ERRORS
from client.config import DEFAULT_WAIT_SECONDS, ClientOptions
from client.errors import ClientError, MissingEndpoint
from client.sequencer import Reset
from client.transports import TRANSPORTS, TransportName, open_transport, present_in
from eventlog.config import MAX_LONG_POLL_SECONDS
from eventlog.endpoints import LOCAL_OUTPUTS_FILE, Endpoints
from eventlog.errors import EventLogError
from eventlog.events import parse_cursor, validate_channel
from local.dev_secret import DEV_SECRET_FILE, read_dev_secret

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def channel_arg(raw: str) -> str:
    try:
        return validate_channel(raw)
    except EventLogError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def json_arg(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not JSON ({exc}); quote strings, e.g. '\"hello\"' or '{{\"n\": 1}}'"
        ) from None


def cursor_arg(raw: str) -> int:
    try:
        return parse_cursor(raw)
    except EventLogError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def count_arg(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number (got {raw!r})")
    return int(raw)


def wait_arg(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_LONG_POLL_SECONDS:
        raise argparse.ArgumentTypeError(f"must be 0 to {MAX_LONG_POLL_SECONDS} (got {raw!r})")
    return int(raw)


def pattern_arg(raw: str) -> str:
    try:
        parse_grants([{"pattern": raw, "scopes": []}])
    except InvalidClaims as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return raw


def ttl_arg(raw: str) -> int:
    try:
        return parse_ttl(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    # The common options are accepted before and after the command; the command's
    # copies default to SUPPRESS so they do not overwrite one given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--endpoints",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="PATH",
        help=f"endpoints file (default: {LOCAL_OUTPUTS_FILE})",
    )
    common.add_argument(
        "--token", default=argparse.SUPPRESS, help="bearer token (WebSocket: ?token=)"
    )
    parser = argparse.ArgumentParser(
        prog="python -m client",
        description="Publish to and subscribe to the event log over polling, SSE or WebSocket.",
    )
    parser.add_argument("--endpoints", type=Path, default=LOCAL_OUTPUTS_FILE, metavar="PATH")
    parser.add_argument("--token", default=None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    publish = commands.add_parser(
        "publish", parents=[common], help="publish one event and print it"
    )
    publish.add_argument("channel", type=channel_arg, metavar="CHANNEL")
    publish.add_argument("data", type=json_arg, metavar="JSON", help="the event's data")
    publish.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default=None,
        help="default: the first of polling, sse, websocket that the endpoints offer",
    )

    subscribe = commands.add_parser(
        "subscribe", parents=[common], help="print a channel's events, one JSON per line"
    )
    subscribe.add_argument("channel", type=channel_arg, metavar="CHANNEL")
    subscribe.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default=None,
        help="default: the first of polling, sse, websocket that the endpoints offer",
    )
    subscribe.add_argument(
        "--after",
        type=cursor_arg,
        default=None,
        metavar="N",
        help="start after this seq (0: all retained); default: live only",
    )
    subscribe.add_argument(
        "--count", type=count_arg, default=None, metavar="N", help="stop after N events"
    )
    subscribe.add_argument(
        "--wait",
        type=wait_arg,
        default=DEFAULT_WAIT_SECONDS,
        metavar="S",
        help=f"polling: seconds of long polling per request (default {DEFAULT_WAIT_SECONDS})",
    )

    token = commands.add_parser(
        "token",
        help="print a token, signed with the local stack's secret or a deployment's",
        description="Print a token signed with the local stack's secret file or, with "
        "--secret-arn, with a deployment's secret (the AuthSecretArn output), read with your "
        "AWS credentials: what a backend that issues tokens does, and what smoke tests use.",
    )
    token.add_argument(
        "--channel",
        dest="patterns",
        action="append",
        type=pattern_arg,
        metavar="PATTERN",
        help="a channel, or a prefix ending in * (repeatable; default: * , every channel)",
    )
    token.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        choices=SCOPES,
        help="what the token may do on those channels (repeatable; default: both)",
    )
    token.add_argument(
        "--ttl",
        type=ttl_arg,
        default=DEFAULT_TOKEN_TTL_SECONDS,
        metavar="TIME",
        help="lifetime: 90s, 15m, 1h, 1d (default 1h)",
    )
    token.add_argument("--sub", default="dev", help="the token's subject (default: dev)")
    secret = token.add_mutually_exclusive_group()
    secret.add_argument(
        "--secret-file",
        type=Path,
        default=DEV_SECRET_FILE,
        metavar="PATH",
        help=f"the development secret (default: {DEV_SECRET_FILE}, written by `make dev`)",
    )
    secret.add_argument(
        "--secret-arn",
        metavar="ARN",
        help="a deployment's signing secret in Secrets Manager (the AuthSecretArn output)",
    )
    return parser


def token_source(args: argparse.Namespace, endpoints: Endpoints, scope: Scope) -> TokenSource:
    """``--token``, else a development token for just this channel and scope, if local."""
    if args.token:
        return str(args.token)
    return dev_tokens_for(endpoints, channels=[{"pattern": args.channel, "scopes": [scope]}])


def read_deployed_secret(secret_arn: str) -> str:
    """The deployment's HS256 key, read with the caller's AWS credentials."""
    import boto3
    import botocore.exceptions

    try:
        found = boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)
    except botocore.exceptions.NoCredentialsError:
        raise ValueError(
            "no AWS credentials to read the secret with: run `aws configure` or set AWS_PROFILE"
        ) from None
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ValueError(f"cannot read the secret {secret_arn}: {code}") from None
    return str(found["SecretString"])


def run_token(args: argparse.Namespace, out: TextIO) -> None:
    scopes: list[Scope] = args.scopes or list(SCOPES)
    grants = parse_grants(
        [{"pattern": pattern, "scopes": scopes} for pattern in args.patterns or ["*"]]
    )
    secret = (
        read_deployed_secret(args.secret_arn)
        if args.secret_arn
        else read_dev_secret(args.secret_file)
    )
    issued = issue_token(
        secret=secret,
        subject=args.sub,
        grants=grants,
        ttl_seconds=args.ttl,
    )
    print(issued.token, file=out, flush=True)


def chosen_transport(args: argparse.Namespace, endpoints: Endpoints) -> TransportName:
    """``--transport``, else the first transport the endpoints offer."""
    if args.transport is not None:
        name: TransportName = args.transport
        return name
    offered = present_in(endpoints)
    if not offered:
        raise MissingEndpoint("the endpoints offer no transport")
    return offered[0]


async def run_publish(args: argparse.Namespace, endpoints: Endpoints, out: TextIO) -> None:
    name = chosen_transport(args, endpoints)
    token = token_source(args, endpoints, "publish")
    async with open_transport(name, endpoints, token=token) as transport:
        event = await transport.publish(args.channel, args.data)
    print(event.encode(), file=out, flush=True)


async def run_subscribe(
    args: argparse.Namespace, endpoints: Endpoints, out: TextIO, err: TextIO
) -> None:
    def report(reset: Reset) -> None:
        lost = reset.lost
        what = f"events {lost.start}-{lost.stop - 1} are" if lost else "the history moved; it is"
        print(f"reset: {what} no longer retained; continuing", file=err, flush=True)

    name = chosen_transport(args, endpoints)
    options = ClientOptions(wait_seconds=args.wait)
    token = token_source(args, endpoints, "subscribe")
    async with open_transport(name, endpoints, token=token, options=options) as transport:
        subscription = await transport.subscribe(args.channel, after=args.after, on_reset=report)
        received = 0
        async for event in subscription:
            print(event.encode(), file=out, flush=True)
            received += 1
            if args.count is not None and received >= args.count:
                return


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; return the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage and the reason
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE

    def fail(status: int, message: str) -> int:
        print(f"{parser.prog}: error: {message}", file=err, flush=True)
        return status

    if args.command == "token":
        try:
            run_token(args, out)
        except (OSError, ValueError) as exc:
            return fail(EXIT_USAGE, str(exc))
        return 0
    try:
        endpoints = Endpoints.load(args.endpoints)
    except FileNotFoundError as exc:
        return fail(EXIT_USAGE, str(exc))
    except (ValueError, AttributeError, OSError) as exc:
        return fail(EXIT_USAGE, f"cannot read the endpoints file {args.endpoints}: {exc}")
    try:
        if args.command == "publish":
            asyncio.run(run_publish(args, endpoints, out))
        else:
            asyncio.run(run_subscribe(args, endpoints, out, err))
    except MissingEndpoint as exc:
        return fail(EXIT_USAGE, f"{exc} (in {args.endpoints})")
    except ClientError as exc:
        if exc.status == 401 and not args.token:
            return fail(EXIT_FAILED, f"{exc} (this endpoint needs a token: pass --token)")
        return fail(EXIT_FAILED, str(exc))
    except TRANSIENT_ERRORS as exc:
        return fail(EXIT_FAILED, f"cannot reach the service: {type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of our output went away (| head)
        return 0
    return 0
