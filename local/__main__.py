"""``python -m local``: run the whole project on 127.0.0.1 (what ``make dev`` does)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from eventlog import endpoints
from local.dev_secret import DEV_SECRET_FILE
from local.disorder import Disorder
from local.servers import PortInUse
from local.stack import LocalConfig, Ports, configure_logging, serve_until_stopped


def _port(name: str, default: int) -> int:
    raw = os.environ.get(f"LOCAL_{name.upper()}_PORT")
    return int(raw) if raw else default


def parse_args(argv: list[str] | None = None) -> LocalConfig:
    defaults = Ports()
    parser = argparse.ArgumentParser(
        prog="python -m local",
        description="Run the polling API, the WebSocket API, the SSE service, the fan-out and "
        "the demo page on 127.0.0.1, over a local DynamoDB.",
    )
    for name in ("demo", "polling", "sse", "websocket", "management", "dynamodb", "broker"):
        parser.add_argument(
            f"--{name}-port",
            type=int,
            default=_port(name, getattr(defaults, name)),
            metavar="PORT",
            help=f"(default {getattr(defaults, name)}, or LOCAL_{name.upper()}_PORT; 0 = any free)",
        )
    parser.add_argument(
        "--outputs",
        type=Path,
        default=endpoints.LOCAL_OUTPUTS_FILE,
        help="where to write the endpoints file (default %(default)s)",
    )
    parser.add_argument(
        "--auth",
        choices=("on", "off"),
        default=os.environ.get("LOCAL_AUTH") or "on",
        help="on (default): every transport needs a token, signed with the development secret; "
        "off: no auth at all, for a throwaway demo (or LOCAL_AUTH=off)",
    )
    parser.add_argument(
        "--dev-secret-file",
        type=Path,
        default=DEV_SECRET_FILE,
        metavar="PATH",
        help="the development secret, created (mode 0600) if missing (default %(default)s)",
    )
    parser.add_argument(
        "--dynamodb-endpoint",
        default=os.environ.get("LOCAL_DYNAMODB_ENDPOINT"),
        help="use this DynamoDB instead of starting moto (tables are created if missing)",
    )
    parser.add_argument(
        "--disorder",
        type=_disorder,
        # A string default goes through ``type`` too, so LOCAL_DISORDER is checked alike.
        default=os.environ.get("LOCAL_DISORDER") or None,
        metavar="SEED|on",
        help="AWS's disorder, seeded: WebSocket messages handled in any order, the stream in "
        "late batches, throttled @connections and DynamoDB requests (local.disorder); 'on' "
        "picks a seed, printed in the banner, that replays the run (or LOCAL_DISORDER)",
    )
    parser.add_argument(
        "--broker",
        choices=("on", "off"),
        default=os.environ.get("LOCAL_BROKER") or "on",
        help="on (default): the SSE service is pushed events through a broker, as deployed "
        "(sse_service.broker); off: it polls the log per channel (or LOCAL_BROKER=off)",
    )
    parser.add_argument(
        "--broker-url",
        default=os.environ.get("LOCAL_BROKER_URL"),
        metavar="URL",
        help="use this Redis or Valkey server (redis://...) instead of starting fakeredis",
    )
    parser.add_argument(
        "--stream-disorder",
        type=int,
        default=_optional_int(os.environ.get("LOCAL_STREAM_DISORDER")),
        metavar="SEED",
        help="only the stream's part of --disorder: a channel's records reach the fan-out in "
        "several batches, some after later ones (local.stream_disorder); the seed replays a "
        "run (or LOCAL_STREAM_DISORDER=SEED)",
    )
    args = parser.parse_args(argv)
    return LocalConfig(
        ports=Ports(
            demo=args.demo_port,
            polling=args.polling_port,
            sse=args.sse_port,
            websocket=args.websocket_port,
            management=args.management_port,
            dynamodb=args.dynamodb_port,
            broker=args.broker_port,
        ),
        outputs_file=args.outputs,
        dynamodb_endpoint=args.dynamodb_endpoint,
        broker=args.broker == "on",
        broker_url=args.broker_url,
        auth=args.auth == "on",
        dev_secret_file=args.dev_secret_file,
        stream_disorder_seed=args.stream_disorder,
        disorder=args.disorder,
    )


def _disorder(raw: str) -> Disorder:
    try:
        return Disorder.parse(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _optional_int(raw: str | None) -> int | None:
    return int(raw) if raw else None


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    configure_logging()
    try:
        asyncio.run(serve_until_stopped(config))
    except PortInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
