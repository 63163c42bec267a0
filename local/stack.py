"""The local stack: every transport of this checkout on 127.0.0.1, running the deployed code.

A transport whose package is gone (removed, README "Make it yours") is left out, and so
are its endpoints in the endpoints file: ``local.transports`` says which are present.

| AWS                                   | here                                           |
|---------------------------------------|------------------------------------------------|
| DynamoDB + Streams                    | moto in its own process (``local.dynamodb``),  |
|                                       | or any endpoint you configure                  |
| HTTP API -> polling Lambda            | the same FastAPI app under uvicorn             |
| WebSocket API -> route Lambdas        | ``local.websocket_gateway`` -> the same handlers |
| stream -> event source mapping -> fan-out | ``local.stream_mapping`` -> the same handler |
| ALB -> Fargate SSE service            | the same FastAPI app under uvicorn             |
| the demo page                         | the same static files                          |
| Secrets Manager (the signing secret)  | ``.local/dev-secret``, generated once          |
| the ``$connect`` Lambda authorizer    | the same handler, before the handshake         |
| CloudWatch metrics (EMF log lines)    | ``local.metrics``, at ``GET /metrics``         |

Auth is on, as in a deployment (``local.dev_auth``): the demo page and the CLI get
development tokens from ``POST /dev/token`` on the demo server. ``--auth off`` (or
``make dev AUTH=off``) turns it off for a throwaway demo, and every server and the
banner say so.

Everything but DynamoDB runs in one process and one event loop (the synchronous
handlers in threads, as Lambda would run them in parallel environments), so Ctrl-C
stops it all, DynamoDB last, and leaves nothing behind. The endpoints file is
written once every server answers, and removed on exit, so a script can wait for it to appear.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import uvicorn

from auth.config import (
    AUTH_AUDIENCE_ENV,
    AUTH_ISSUER_ENV,
    AUTH_JWKS_URL_ENV,
    AUTH_MODE_ENV,
    AUTH_SECRET_ARN_ENV,
    AUTH_SECRET_ENV,
    OFF_WARNING,
)
from eventlog import endpoints, metrics, schema, structured_logs
from eventlog.config import WEBSOCKET_MAX_CONNECTION_SECONDS, Settings
from eventlog.endpoints import Endpoints
from eventlog.stream import EVENT_INSERTS
from local.dev_auth import DEV_TOKEN_PATH, dev_token_route
from local.dev_secret import DEV_SECRET_FILE, load_or_create_dev_secret
from local.disorder import Disorder
from local.metrics import Collector
from local.servers import HOST, EmbeddedServer, PortInUse, bind, child_service, port_of
from local.stream_mapping import POLL_INTERVAL_SECONDS
from local.transports import Transport, present_transports

logger = logging.getLogger("local")

REGION = "us-east-1"
DEMO_DIR = Path(__file__).resolve().parent.parent / "web"
METRICS_PATH = "/metrics"
SSE_METRICS_INTERVAL_SECONDS = 5


@dataclass(frozen=True, kw_only=True)
class Ports:
    """Where each server listens; 0 picks a free port (the tests do)."""

    demo: int = 8000
    polling: int = 8001
    sse: int = 8002
    websocket: int = 8003
    management: int = 8004
    dynamodb: int = 8005
    broker: int = 8006

    @classmethod
    def ephemeral(cls) -> Ports:
        return cls(demo=0, polling=0, sse=0, websocket=0, management=0, dynamodb=0, broker=0)


@dataclass(frozen=True, kw_only=True)
class LocalConfig:
    ports: Ports = field(default_factory=Ports)
    outputs_file: Path = endpoints.LOCAL_OUTPUTS_FILE
    dynamodb_endpoint: str | None = None
    """An existing DynamoDB endpoint (a real region's, or another emulator); None starts moto."""
    broker: bool = True
    """The SSE service's push backplane, as deployed; off: its feeds poll the log."""
    broker_url: str | None = None
    """An existing Redis or Valkey server for it; None starts fakeredis (``local.broker``)."""
    events_table: str = "events"
    connections_table: str = "connections"
    stream_poll_interval: float = POLL_INTERVAL_SECONDS
    """Between two polls of the events table's stream by each local event source mapping.
    Five times as often as Lambda polls a shard (``local.stream_mapping``), so local
    WebSocket and SSE latencies leave out about 100 ms of the deployed stream hop
    (``bench.aws_estimate`` puts it back)."""
    auth: bool = True
    """Off only for a throwaway demo: then anyone on this machine may use every channel."""
    dev_secret_file: Path = DEV_SECRET_FILE
    stream_disorder_seed: int | None = None
    """A seed to deliver the stream out of order across batches (``local.stream_disorder``)."""
    disorder: Disorder | None = None
    """AWS's disorder in every part of the stack (``local.disorder``); None: orderly."""


def _configure_auth(config: LocalConfig) -> str | None:
    """Set the ``AUTH_*`` variables every verifier in this process reads; the secret, if on."""
    for name in (AUTH_SECRET_ARN_ENV, AUTH_JWKS_URL_ENV, AUTH_AUDIENCE_ENV, AUTH_ISSUER_ENV):
        os.environ.pop(name, None)  # a deployment's settings must not leak into the local stack
    if not config.auth:
        os.environ[AUTH_MODE_ENV] = "off"
        os.environ.pop(AUTH_SECRET_ENV, None)
        return None
    secret = load_or_create_dev_secret(config.dev_secret_file)
    os.environ.update({AUTH_MODE_ENV: "hs256", AUTH_SECRET_ENV: secret})
    return secret


def _configure_environment(config: LocalConfig, dynamodb_endpoint: str) -> None:
    """Point every boto3 client in this process at the local services, by configuration only."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    os.environ.setdefault("AWS_REGION", os.environ["AWS_DEFAULT_REGION"])
    os.environ.update(
        {
            "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
            "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": dynamodb_endpoint,
            # botocore sends stream calls to an account-based host moto does not serve.
            "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
            "EVENTS_TABLE_NAME": config.events_table,
            "CONNECTIONS_TABLE_NAME": config.connections_table,
        }
    )
    # Often enough that /metrics shows the SSE streams a few seconds after they open.
    os.environ.setdefault("SSE_METRICS_INTERVAL_SECONDS", str(SSE_METRICS_INTERVAL_SECONDS))


def _ensure_tables(config: LocalConfig, *, websocket: bool) -> str:
    """Create the tables from their shared specs if missing; return the events stream ARN.

    The connections table is the WebSocket transport's: only when it is present.
    """
    import boto3

    client = boto3.client("dynamodb")
    existing = set(client.list_tables()["TableNames"])
    tables = [(schema.EVENTS_TABLE, config.events_table)]
    if websocket:
        from websocket_api.connections import CONNECTIONS_TABLE

        tables.append((CONNECTIONS_TABLE, config.connections_table))
    for spec, name in tables:
        if name not in existing:
            schema.create_table(client, spec, name)
    arn = client.describe_table(TableName=config.events_table)["Table"].get("LatestStreamArn")
    if not arn:
        raise RuntimeError(f"table {config.events_table} has no stream: the fan-out needs one")
    return str(arn)


async def _wait_until_answering(url: str, *, within: float = 20.0) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        try:
            async with asyncio.timeout(within):
                while True:
                    try:
                        await client.get(url)
                        return
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
        except TimeoutError:
            raise RuntimeError(f"{url} did not answer within {within:.0f} s") from None


def _demo_app(
    outputs: dict[str, dict[str, str]], *, secret: str | None, collector: Collector
) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import BaseRoute, Mount, Route
    from starlette.staticfiles import StaticFiles

    async def config(_: Any) -> JSONResponse:
        # The page reads the same endpoints file the CLI and the tests read.
        return JSONResponse(outputs, headers={"Cache-Control": "no-store"})

    async def metrics_summary(_: Any) -> JSONResponse:
        # What the dashboard's code metrics would say (local.metrics).
        return JSONResponse(collector.summary(), headers={"Cache-Control": "no-store"})

    routes: list[BaseRoute] = [
        Route("/outputs.json", config),
        Route(METRICS_PATH, metrics_summary),
    ]
    if secret is not None:
        routes.append(dev_token_route(secret=secret))
    routes.append(Mount("/", StaticFiles(directory=DEMO_DIR, html=True)))
    return Starlette(routes=routes)


@dataclass
class RunningStack:
    """What ``start`` brought up; ``outputs`` is the endpoints file's content."""

    outputs: dict[str, dict[str, str]]
    stop_callbacks: list[Any] = field(default_factory=list)


class StackAlreadyRunning(PortInUse):
    """Another local stack is serving from the same endpoints file."""


def refuse_if_running(outputs_file: Path) -> None:
    """Refuse to start over a live stack's endpoints file, naming it and the way around.

    A second stack with the default ports and file would fail on its first port anyway,
    after deleting the first stack's endpoints file: every client would then think no
    stack runs. A file whose demo page does not answer was left by a stack that died.
    """
    try:
        demo_url = Endpoints.load(outputs_file).demo_url
    except (FileNotFoundError, ValueError, OSError):
        return
    if not demo_url:
        return
    try:
        with urllib.request.urlopen(urljoin(demo_url, "outputs.json"), timeout=1):  # noqa: S310
            pass
    except OSError:
        return  # stale
    raise StackAlreadyRunning(
        f"a local stack is already running (demo page {demo_url}, endpoints in {outputs_file}): "
        "stop it with Ctrl-C, or start a second one on other ports with its own endpoints "
        "file: .venv/bin/python -m local --outputs .local/second.json --demo-port 0 "
        "--polling-port 0 --sse-port 0 --websocket-port 0 --management-port 0 --dynamodb-port 0 "
        "--broker-port 0"
    )


@contextlib.asynccontextmanager
async def running(config: LocalConfig) -> AsyncIterator[RunningStack]:
    """Start every server of the transports present, write the endpoints file, stop on exit.

    A transport is present when its package is (``local.transports``): its code is imported
    only then, so removing one runs the others, and the endpoints file lists only them.
    """
    from local.stream_mapping import LocalStreamMapping

    refuse_if_running(config.outputs_file)
    here = present_transports()
    ports = config.ports
    http_ports = {"polling": ports.polling, "sse": ports.sse, "demo": ports.demo}
    sockets = {
        name: bind(HOST, port, name=name, option=f"--{name}-port")
        for name, port in http_ports.items()
        if name == "demo" or name in here
    }
    # Only now that this stack has its ports: a file left by a stack that died is stale.
    config.outputs_file.unlink(missing_ok=True)  # never leave a stale file for a waiter
    async with contextlib.AsyncExitStack() as stack:
        for sock in sockets.values():
            stack.callback(sock.close)

        if config.dynamodb_endpoint:
            dynamodb_endpoint = config.dynamodb_endpoint
        else:
            bind(
                HOST, ports.dynamodb, name="dynamodb", option="--dynamodb-port"
            ).close()  # fail early and clearly
            dynamodb_endpoint = stack.enter_context(
                child_service("local.dynamodb", ports.dynamodb, name="DynamoDB (moto)")
            )
        # The broker is the SSE service's backplane: only with SSE.
        broker_url = _start_broker(config, stack) if "sse" in here else None
        _configure_environment(config, dynamodb_endpoint)
        # Every handler of this process emits its metric lines here, as to CloudWatch.
        collector = Collector()
        metrics.use_sink(collector)
        stack.callback(metrics.use_sink, None)
        secret = _configure_auth(config)
        if secret is None:
            logger.warning(OFF_WARNING)
        stream_arn = await asyncio.to_thread(_ensure_tables, config, websocket="websocket" in here)

        import boto3

        disorder = config.disorder
        if disorder is not None:
            # Every DynamoDB client the stack's code creates from here on meets throttling.
            stack.callback(disorder.throttle_dynamodb(boto3._get_default_session()._session))

        def stream_reader() -> Any:
            """A Streams client for one reader: a disordered one holds records per shard,
            so two readers sharing it would take each other's."""
            streams: Any = boto3.client("dynamodbstreams")
            if disorder is not None:
                return disorder.stream(streams)
            if config.stream_disorder_seed is not None:
                from local.stream_disorder import DisorderedStream

                return DisorderedStream(streams, seed=config.stream_disorder_seed)
            return streams

        async def read_stream(handler: Any, *, max_age: float, function_timeout: float) -> None:
            """One reader of the stream, as ``infra.events_table.read_event_inserts`` deploys
            it, with the deployed function's record age and timeout."""
            mapping = LocalStreamMapping(
                streams_client=stream_reader(),
                stream_arn=stream_arn,
                handler=handler,
                filter_patterns=EVENT_INSERTS,
                region=os.environ["AWS_REGION"],
                max_record_age_seconds=max_age,
                timeout_seconds=function_timeout,
                poll_interval=config.stream_poll_interval,
            )
            await asyncio.to_thread(mapping.start)
            stack.callback(mapping.stop)

        base = {name: f"http://{HOST}:{port_of(sock)}" for name, sock in sockets.items()}
        outputs = {
            endpoints.EVENT_LOG_STACK: {
                endpoints.EVENTS_TABLE_NAME: config.events_table,
                endpoints.LOCAL_DYNAMODB_ENDPOINT: dynamodb_endpoint,
            },
        }
        apps: dict[str, Any] = {}
        if "polling" in here:
            from polling.app import create_app as create_polling_app

            outputs[endpoints.POLLING_STACK] = {endpoints.POLLING_API_URL: base["polling"]}
            apps["polling"] = create_polling_app()
        if "websocket" in here:
            websocket_url = await _start_websocket(config, stack, read_stream)
            outputs[endpoints.WEBSOCKET_STACK] = {
                endpoints.WEBSOCKET_URL: websocket_url,
                endpoints.CONNECTIONS_TABLE_NAME: config.connections_table,
            }
        if "sse" in here:
            from sse_service.app import create_app as create_sse_app

            if broker_url is not None:
                from sse_service import relay

                await read_stream(
                    relay.handler,
                    max_age=relay.RELAY_MAX_RECORD_AGE_SECONDS,
                    function_timeout=relay.RELAY_TIMEOUT_SECONDS,
                )
            outputs[endpoints.SSE_STACK] = {
                endpoints.SSE_URL: base["sse"],
                **({endpoints.LOCAL_BROKER_URL: broker_url} if broker_url else {}),
            }
            apps["sse"] = create_sse_app()
        outputs[endpoints.EDGE_STACK] = {endpoints.DEMO_URL: base["demo"] + "/"}
        if secret is not None:
            outputs[endpoints.EDGE_STACK][endpoints.LOCAL_DEV_TOKEN_URL] = (
                base["demo"] + DEV_TOKEN_PATH
            )
        apps["demo"] = _demo_app(outputs, secret=secret, collector=collector)
        for name, app in apps.items():
            server = EmbeddedServer(
                # No access log: browsers send tokens in query strings (the tests check it).
                uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
            )
            task = asyncio.create_task(server.serve(sockets=[sockets[name]]), name=name)
            stack.push_async_callback(_stop_server, server, task)
        if "sse" in apps:
            # Runs first (callbacks unwind in reverse): the open streams end before their
            # server stops, as a deployed task drains, only at once.
            stack.push_async_callback(_end_streams, apps["sse"].state.hub)

        await asyncio.gather(
            *(
                _wait_until_answering(
                    base[name] + ("/outputs.json" if name == "demo" else "/healthz")
                )
                for name in apps
            )
        )
        config.outputs_file.parent.mkdir(parents=True, exist_ok=True)
        partial = config.outputs_file.with_suffix(".tmp")
        partial.write_text(json.dumps(outputs, indent=2) + "\n")
        partial.replace(config.outputs_file)  # atomic: a waiter never reads half a file
        stack.callback(config.outputs_file.unlink, missing_ok=True)
        yield RunningStack(outputs=outputs)


async def _end_streams(hub: Any, *, within: float = 2.0) -> None:
    """End every open SSE stream cleanly: a forced exit would cancel each mid-response."""
    hub.end_all()
    deadline = asyncio.get_running_loop().time() + within
    # Polled, briefly: each stream leaves the hub when its response has ended.
    while hub.open_streams and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)


def _start_broker(config: LocalConfig, stack: contextlib.AsyncExitStack) -> str | None:
    """The SSE service's push backplane, as deployed (fakeredis unless given one); None: off."""
    from sse_service.settings import SSE_BROKER_URL_ENV

    if not config.broker:
        os.environ.pop(SSE_BROKER_URL_ENV, None)
        return None
    broker_url = config.broker_url
    if broker_url is None:
        bind(HOST, config.ports.broker, name="broker", option="--broker-port").close()
        broker_url = stack.enter_context(
            child_service("local.broker", config.ports.broker, name="broker (fakeredis)")
        )
    os.environ[SSE_BROKER_URL_ENV] = broker_url  # the SSE app and the relay read it
    return broker_url


ReadStream = Callable[..., Awaitable[None]]


async def _start_websocket(
    config: LocalConfig, stack: contextlib.AsyncExitStack, read_stream: ReadStream
) -> str:
    """The local WebSocket API with the route handlers, and the fan-out on the stream."""
    from local.websocket_gateway import LocalWebSocketApi
    from websocket_api import authorizer, fanout
    from websocket_api.config import (
        FANOUT_TIMEOUT_SECONDS,
        IDENTITY_SOURCE,
        MANAGEMENT_ENDPOINT_ENV,
    )
    from websocket_api.routes import ROUTES

    disorder = config.disorder
    # As deployed: with auth on, $connect has the REQUEST authorizer; with it off, none.
    authorizer.use_verifier(None)
    gateway = LocalWebSocketApi(
        routes=ROUTES,
        host=HOST,
        port=config.ports.websocket,
        management_port=config.ports.management,
        authorizer=authorizer.handler if config.auth else None,
        identity_source=(IDENTITY_SOURCE,) if config.auth else (),
        message_delay=None if disorder is None else disorder.message_delay(),
        connections_throttled=None if disorder is None else disorder.connections_throttled(),
    )
    await gateway.start()
    stack.push_async_callback(gateway.stop)
    os.environ[MANAGEMENT_ENDPOINT_ENV] = gateway.management_endpoint  # the stage's, as deployed
    await read_stream(
        fanout.handler,
        max_age=WEBSOCKET_MAX_CONNECTION_SECONDS,
        function_timeout=FANOUT_TIMEOUT_SECONDS,
    )
    return str(gateway.url)


def _not_a_cancelled_request(record: logging.LogRecord) -> bool:
    # uvicorn logs a request task cancelled at shutdown as "Exception in ASGI application";
    # at a stop it is the expected end of a request still in flight, not an application error.
    return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


async def _stop_server(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    """Stop one server: no new requests, then the ones in flight, then the app."""
    server.should_exit = True
    # Not waiting for requests in flight: a long poll would hold the stop for its whole wait.
    server.force_exit = True
    await asyncio.wait({task}, timeout=5)
    # The requests still running are cut off now, as a stopped function's are, rather than
    # by the loop's close, after their application has shut down under them.
    logging.getLogger("uvicorn.error").addFilter(_not_a_cancelled_request)
    leftovers = [request for request in server.server_state.tasks if not request.done()]
    for request in leftovers:
        request.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)
    # A forced exit skips the application's shutdown, which would leave its lifespan task
    # waiting, to be cancelled (and logged with a traceback) when the loop closes.
    lifespan = getattr(server, "lifespan", None)
    if lifespan is not None and not lifespan.shutdown_event.is_set():
        with contextlib.suppress(Exception):
            await asyncio.wait_for(lifespan.shutdown(), timeout=5)


async def serve_until_stopped(config: LocalConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running(config) as stack:
        print_banner(stack.outputs, config)
        await stop.wait()
        print("\nstopping...", flush=True)


def found_broker(outputs: dict[str, dict[str, str]]) -> str:
    url = outputs.get(endpoints.SSE_STACK, {}).get(endpoints.LOCAL_BROKER_URL)
    return f"{url} (events pushed to the SSE service)" if url else "off: SSE polls the log"


def transport_lines(outputs: dict[str, dict[str, str]]) -> list[str]:
    """The banner's lines for the transports this stack runs, and one for those it lacks."""
    found = endpoints.Endpoints.from_outputs(outputs)
    urls: dict[Transport, tuple[str, str | None]] = {
        "polling": ("polling API", found.polling_api_url),
        "sse": ("SSE", found.sse_url),
        "websocket": ("WebSocket API", found.websocket_url),
    }
    lines = [f"  {label:<14} {url}" for label, url in urls.values() if url]
    if found.sse_url:
        lines.append(f"  {'SSE broker':<14} {found_broker(outputs)}")
    missing = [label for label, url in urls.values() if not url]
    if missing:
        lines.append(f"  {'not here':<14} {', '.join(missing)} (removed from this checkout)")
    return lines


def try_transport(found: endpoints.Endpoints) -> str:
    return "sse" if found.sse_url else "websocket" if found.websocket_url else "polling"


def print_banner(outputs: dict[str, dict[str, str]], config: LocalConfig) -> None:
    found = endpoints.Endpoints.from_outputs(outputs)
    if config.auth:
        auth = [
            f"  auth           on: tokens signed with {config.dev_secret_file}",
            f"  dev tokens     POST {found.dev_token_url}",
            "                 or: .venv/bin/python -m client token --channel 'news*' --ttl 1h",
        ]
    else:
        rule = "!" * 78
        auth = [rule, f"  {OFF_WARNING}", rule]
    disorder = []
    if config.disorder is not None:
        disorder = [f"  {line}" for line in config.disorder.describe()]
    elif config.stream_disorder_seed is not None:
        disorder = [
            f"  stream         disordered, seed {config.stream_disorder_seed}: a channel's events "
            "reach the fan-out in several batches, some late"
        ]
    lines = [
        "",
        "Local stack is up (Ctrl-C stops everything):",
        f"  demo page      {found.demo_url}",
        *transport_lines(outputs),
        f"  DynamoDB       {os.environ['AWS_ENDPOINT_URL_DYNAMODB']}",
        f"  endpoints file {config.outputs_file}",
        f"  metrics        {(found.demo_url or '/').rstrip('/')}{METRICS_PATH}",
        *auth,
        *disorder,
        "",
        f"Try: .venv/bin/python -m client subscribe news --transport {try_transport(found)}",
        '     .venv/bin/python -m client publish news \'{"hello": "world"}\'',
        "",
    ]
    print("\n".join(lines), flush=True)


REQUEST_LOGGERS = ("websocket_api.routes", "eventlog.http_api", "sse_service.app")
"""The handlers' one line per request: the local gateway already says as much, more briefly."""


def configure_logging() -> None:
    structured_logs.install()
    handler = logging.StreamHandler()
    handler.setFormatter(structured_logs.ReadableFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    # httpx logs every request; the stream poller alone makes several a second.
    for noisy in ("httpx", "botocore", "websockets.server", *REQUEST_LOGGERS):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Settings are validated at start, so a bad value fails before a server binds.
    Settings.from_env()
