"""The deployed post path: ``management.ConnectionsClient`` against the local @connections API.

The API is ``local.connections_api`` under uvicorn, as the local gateway serves it, behind a
recorder that keeps every request as it arrived on the wire. A request counts as accepted only
if the API delivered it and its SigV4 signature checks out as API Gateway checks it: the
canonical request rebuilt from what was received (method, path, signed headers, body), signed
with the secret, at the request's own ``X-Amz-Date``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from local.connections_api import connections_app
from tests.sse_support import LiveServer
from websocket_api import frames, management
from websocket_api.config import POST_MAX_ATTEMPTS
from websocket_api.connections import Receiver
from websocket_api.fanout import Fanout

STAGE = "ws"
REGION = "eu-west-1"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ALICE = "AbCdEfGhIjKlMn0="
BOB = "ZyXwVuTsRqPoNm1="
NOBODY = "QqQqQqQqQqQqQq2="


@dataclass
class Socket:
    """An open connection as the API sees it: what was sent to it, and whether it is closed."""

    connected_at_ms: int = 1_764_000_000_000
    last_active_ms: int = 1_764_000_000_000
    source_ip: str = "127.0.0.1"
    user_agent: str | None = None
    frames: list[str | bytes] = field(default_factory=list)
    closed: bool = False

    async def send(self, frame: str | bytes) -> bool:
        self.frames.append(frame)
        return True


@dataclass(frozen=True)
class Received:
    method: str
    raw_path: bytes
    headers: dict[str, str]
    body: bytes
    client_port: int


class Recorder:
    """ASGI middleware: keeps each request as received, then hands it on unchanged."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[Received] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        messages, body = [], b""
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests.append(
            Received(
                method=scope["method"],
                raw_path=scope["raw_path"],
                headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
                body=body,
                client_port=scope["client"][1],
            )
        )
        replay = iter(messages)

        async def receive_again() -> Any:
            return next(replay)

        await self.app(scope, receive_again, send)


@dataclass
class Api:
    url: str
    sockets: dict[str, Socket]
    recorder: Recorder
    throttle_next: list[int]
    """How many of the next requests to answer 429 (the list holds one count)."""
    clients: list[Any] = field(default_factory=list)
    """Closed when the test ends."""

    @property
    def endpoint(self) -> str:
        return f"{self.url}/{STAGE}"


@pytest.fixture
def api() -> Iterator[Api]:
    sockets = {ALICE: Socket(), BOB: Socket()}
    throttle_next = [0]
    lock = threading.Lock()

    def throttled() -> bool:
        with lock:
            if throttle_next[0] > 0:
                throttle_next[0] -= 1
                return True
            return False

    def close(socket: Socket) -> None:
        socket.closed = True
        for connection_id, open_socket in list(sockets.items()):
            if open_socket is socket:
                del sockets[connection_id]

    recorder = Recorder(
        connections_app(
            stage=STAGE,
            max_message_bytes=128 * 1024,
            find=sockets.get,
            close=close,
            throttled=throttled,
        )
    )
    server = LiveServer(cast(Any, recorder))
    server.__enter__()
    api = Api(f"http://127.0.0.1:{server.port}", sockets, recorder, throttle_next)
    try:
        yield api
    finally:
        for client in api.clients:
            client.close()
        server.stop(drain=False)


def client_for(
    api: Api, *, credentials: Any = None, endpoint: str | None = None
) -> management.ConnectionsClient:
    client = management.ConnectionsClient(
        endpoint or api.endpoint,
        max_pool_connections=4,
        credentials=credentials or Credentials("AKIDEXAMPLE", SECRET),
        region=REGION,
    )
    api.clients.append(client)
    return client


AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[^,]+), Signature=(?P<sig>[0-9a-f]{64})"
)


def signed_by(request: Received, *, secret: str, host: str) -> str:
    """The access key whose ``secret`` signed ``request``, checked as API Gateway checks it."""
    match = AUTHORIZATION.fullmatch(request.headers["authorization"])
    assert match is not None, request.headers["authorization"]
    assert match["service"] == "execute-api"
    assert match["region"] == REGION
    signed = match["signed"].split(";")
    assert {"host", "x-amz-date"} <= set(signed)
    assert request.headers["host"] == host
    wire = AWSRequest(
        method=request.method,
        url=f"http://{host}{request.raw_path.decode()}",
        data=request.body,
        headers={name: request.headers[name] for name in signed},
    )
    wire.context["timestamp"] = request.headers["x-amz-date"]
    assert match["date"] == wire.context["timestamp"][:8]
    signer = SigV4Auth(ReadOnlyCredentials(match["key"], secret, None), "execute-api", REGION)
    expected = signer.signature(signer.string_to_sign(wire, signer.canonical_request(wire)), wire)
    assert match["sig"] == expected, "the signature does not match the request as received"
    return match["key"]


def test_a_signed_post_is_delivered_and_its_signature_checks_out(api: Api) -> None:
    client = client_for(api)
    assert management.post(client, ALICE, '{"type":"event"}') is True
    assert api.sockets[ALICE].frames == ['{"type":"event"}']
    [request] = api.recorder.requests
    host = api.url.removeprefix("http://")
    assert signed_by(request, secret=SECRET, host=host) == "AKIDEXAMPLE"
    assert request.method == "POST"
    assert request.body == b'{"type":"event"}'


def test_the_path_is_the_one_boto3_sends(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # boto3's default session keeps the credentials an earlier test resolved: a fresh one.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    management.post(client_for(api), ALICE, "ours")
    sdk = management.sdk_client(api.endpoint)
    management.post(sdk, ALICE, "boto3's")
    sdk.close()
    ours, boto3s = api.recorder.requests
    assert ours.raw_path == boto3s.raw_path == f"/{STAGE}/@connections/AbCdEfGhIjKlMn0%3D".encode()
    host = api.url.removeprefix("http://")
    assert signed_by(boto3s, secret=SECRET, host=host) == signed_by(ours, secret=SECRET, host=host)
    assert api.sockets[ALICE].frames == ["ours", "boto3's"]


def test_each_request_is_signed_with_the_credentials_of_the_moment(api: Api) -> None:
    class Rotating:
        """Refreshable credentials: a new key once the old one expires."""

        def __init__(self) -> None:
            self.generation = 0

        def get_frozen_credentials(self) -> ReadOnlyCredentials:
            self.generation += 1
            return ReadOnlyCredentials(f"AKID{self.generation}", SECRET, f"token{self.generation}")

    client = client_for(api, credentials=Rotating())
    management.post(client, ALICE, "one")
    management.post(client, ALICE, "two")
    host = api.url.removeprefix("http://")
    first, second = api.recorder.requests
    assert signed_by(first, secret=SECRET, host=host) == "AKID1"
    assert signed_by(second, secret=SECRET, host=host) == "AKID2"
    assert first.headers["x-amz-security-token"] == "token1"
    assert second.headers["x-amz-security-token"] == "token2"


def test_posts_reuse_one_kept_alive_connection(api: Api) -> None:
    client = client_for(api)
    for n in range(20):
        assert management.post(client, ALICE if n % 2 else BOB, str(n))
    client.delete_connection(ConnectionId=BOB)
    assert client.opened == 1
    assert len({request.client_port for request in api.recorder.requests}) == 1
    assert len(api.recorder.requests) == 21
    assert api.sockets[ALICE].frames == [str(n) for n in range(1, 20, 2)]


def test_a_pool_of_threads_shares_at_most_its_pool_size_in_connections(api: Api) -> None:
    client = client_for(api)
    threads = [
        threading.Thread(target=lambda: [management.post(client, ALICE, "x") for _ in range(10)])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(api.sockets[ALICE].frames) == 40
    assert client.opened <= 4
    assert len({request.client_port for request in api.recorder.requests}) == client.opened


def test_gone_is_false_and_the_fanout_forgets_the_connection(api: Api) -> None:
    client = client_for(api)
    assert management.post(client, NOBODY, "x") is False  # 410: never connected

    class Subscribers:
        def __init__(self) -> None:
            self.forgotten: list[str] = []

        def receivers(self, channel: str, **_: Any) -> Iterator[list[Receiver]]:
            yield [Receiver(ALICE), Receiver(NOBODY), Receiver(BOB)]

        def forget(self, connection_id: str) -> int:
            self.forgotten.append(connection_id)
            return 1

    subscribers = Subscribers()
    fan = Fanout(connections=cast(Any, subscribers), client=client, workers=2)
    try:
        delivery = fan.deliver("news", frames.event('{"seq":1}'))
    finally:
        fan._executor.shutdown()
    assert delivery.sent == 2
    assert delivery.gone == [NOBODY]
    assert subscribers.forgotten == [NOBODY]
    assert len(api.sockets[ALICE].frames) == len(api.sockets[BOB].frames) == 1


def test_a_throttled_post_is_retried_until_the_deadline_when_patient(api: Api) -> None:
    client = client_for(api)
    api.throttle_next[0] = POST_MAX_ATTEMPTS + 3  # more than max_attempts allows
    sleeps: list[float] = []
    heard: list[bool] = []
    assert management.post(
        client,
        ALICE,
        "finally",
        sleep=sleeps.append,
        patient_when_throttled=True,
        on_transient=lambda exc: heard.append(management.throttled(exc)),
    )
    assert api.sockets[ALICE].frames == ["finally"]
    assert heard == [True] * (POST_MAX_ATTEMPTS + 3)
    assert len(sleeps) == POST_MAX_ATTEMPTS + 3
    assert len(api.recorder.requests) == POST_MAX_ATTEMPTS + 4  # each attempt is one request

    api.throttle_next[0] = 1_000
    checks: list[None] = []

    def out_of_time() -> bool:
        checks.append(None)
        return len(checks) > 3  # the deadline comes after three retries

    with pytest.raises(management.PostFailed) as caught:
        management.post(
            client,
            BOB,
            "never",
            sleep=sleeps.append,
            out_of_time=out_of_time,
            patient_when_throttled=True,
        )
    assert caught.value.transient
    assert api.sockets[BOB].frames == []
    assert len(api.recorder.requests) == POST_MAX_ATTEMPTS + 4 + 4


def test_a_throttled_post_without_a_deadline_is_tried_max_attempts_times(api: Api) -> None:
    client = client_for(api)
    api.throttle_next[0] = 1_000
    with pytest.raises(management.PostFailed) as caught:
        management.post(client, ALICE, "x", max_attempts=3, sleep=lambda _: None)
    assert caught.value.transient
    assert len(api.recorder.requests) == 3


def test_refusals_a_retry_cannot_change_are_permanent(api: Api) -> None:
    client = client_for(api)
    with pytest.raises(management.PostFailed) as too_large:
        management.post(client, ALICE, "x" * (128 * 1024 + 1), sleep=lambda _: None)
    assert not too_large.value.transient
    no_stage = client_for(api, endpoint=api.url + "/other")
    with pytest.raises(management.PostFailed) as forbidden:
        management.post(no_stage, ALICE, "x", sleep=lambda _: None)
    assert not forbidden.value.transient
    assert len(api.recorder.requests) == 2  # neither was retried
    assert api.sockets[ALICE].frames == []


def test_errors_carry_what_botocore_would_parse(api: Api) -> None:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as gone:
        client_for(api).post_to_connection(ConnectionId=NOBODY, Data=b"x")
    assert gone.value.response["Error"] == {"Code": "GoneException", "Message": "Gone"}
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    assert gone.value.operation_name == "PostToConnection"


def test_close_deletes_the_connection(api: Api) -> None:
    client = client_for(api)
    socket = api.sockets[ALICE]
    management.close(client, ALICE)
    assert socket.closed
    management.close(client, ALICE)  # already gone: fine
    assert [r.method for r in api.recorder.requests] == ["DELETE", "DELETE"]


def test_a_connection_the_server_closed_while_idle_is_not_reused(api: Api) -> None:
    client = client_for(api)
    management.post(client, ALICE, "before")
    [(idle, since)] = client._idle
    # Put back long enough ago to be checked, as after a quiet spell.
    client._idle = [(idle, since - management.IDLE_CHECK_AFTER_SECONDS)]
    assert idle.sock is not None
    idle.sock.shutdown(2)  # now at EOF, as when the server times an idle connection out
    assert management.post(client, ALICE, "after", max_attempts=1)
    assert client.opened == 2
    assert api.sockets[ALICE].frames == ["before", "after"]


def test_a_connection_dropped_just_after_its_last_use_costs_a_retry_not_the_frame(
    api: Api,
) -> None:
    client = client_for(api)
    management.post(client, ALICE, "before")
    [(idle, _)] = client._idle
    assert idle.sock is not None
    idle.sock.shutdown(2)  # back a moment ago: reused unchecked, and the post fails
    retries: list[float] = []
    assert management.post(client, ALICE, "after", sleep=retries.append)
    assert len(retries) == 1  # the one retry, on a new connection
    assert client.opened == 2
    assert api.sockets[ALICE].frames == ["before", "after"]
