"""The local stack's development auth: the secret file and ``POST /dev/token``."""

from __future__ import annotations

import dataclasses
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from auth.claims import grant
from local.dev_auth import DEV_TOKEN_PATH, dev_token_route
from local.dev_secret import load_or_create_dev_secret, read_dev_secret
from tests.auth_support import TEST_SECRET, verifier

pytestmark = pytest.mark.anyio

APP = Starlette(routes=[dev_token_route(secret=TEST_SECRET)])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def local() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        yield client


def test_the_secret_is_generated_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / ".local" / "dev-secret"
    first = load_or_create_dev_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64
    assert load_or_create_dev_secret(path) == first  # a restart keeps earlier tokens valid
    assert read_dev_secret(path) == first
    path.chmod(0o644)
    assert load_or_create_dev_secret(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("short\n")
    with pytest.raises(ValueError, match="delete it"):
        read_dev_secret(path)
    with pytest.raises(FileNotFoundError, match="make dev"):
        read_dev_secret(tmp_path / "missing")


async def test_a_default_token_may_do_everything_for_an_hour(local: httpx.AsyncClient) -> None:
    response = await local.post(DEV_TOKEN_PATH, json={})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    reply = response.json()
    assert (reply["token_type"], reply["expires_in"]) == ("Bearer", 3600)
    claims = verifier().verify(reply["token"])
    assert claims.subject == "dev"
    assert claims.grants == (grant("*", "subscribe", "publish"),)
    assert claims.expires_at == reply["expires_at"]
    assert 3590 < reply["expires_at"] - time.time() <= 3601  # exp is rounded up


async def test_a_token_may_be_narrowed(local: httpx.AsyncClient) -> None:
    body = {
        "sub": "alice",
        "channels": [{"pattern": "news*", "scopes": ["subscribe"]}],
        "ttl": "5m",
    }
    reply = (await local.post(DEV_TOKEN_PATH, json=body)).json()
    claims = verifier().verify(reply["token"])
    assert (claims.subject, claims.grants) == ("alice", (grant("news*", "subscribe"),))
    assert reply["expires_in"] == 300


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"channels": "news"}, 400),
        ({"channels": [{"pattern": "a b", "scopes": []}]}, 400),
        ({"ttl": "2d"}, 400),
        ({"ttl": True}, 400),
        ({"sub": ""}, 400),
        ({"admin": True}, 400),
        ([], 400),
    ],
)
async def test_bad_requests_are_400(local: httpx.AsyncClient, body: object, status: int) -> None:
    assert (await local.post(DEV_TOKEN_PATH, json=body)).status_code == status


async def test_a_body_nested_too_deeply_is_400(local: httpx.AsyncClient) -> None:
    response = await local.post(
        DEV_TOKEN_PATH, content=b"[" * 100_000, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400


async def test_only_local_json_requests_get_a_token(local: httpx.AsyncClient) -> None:
    # A form post, which a page of another origin may send without a preflight: refused.
    form = await local.post(DEV_TOKEN_PATH, content=b"", headers={"Content-Type": "text/plain"})
    assert form.status_code == 415
    # A page that rebinds its own name to 127.0.0.1 still sends its own Host: refused.
    rebound = await local.post(DEV_TOKEN_PATH, json={}, headers={"Host": "attacker.example"})
    assert rebound.status_code == 403
    assert "token" not in rebound.json()
    assert (await local.get(DEV_TOKEN_PATH)).status_code == 405
    localhost = await local.post(DEV_TOKEN_PATH, json={}, headers={"Host": "localhost:8000"})
    assert localhost.status_code == 200


async def test_no_body_at_all_is_the_default_request(local: httpx.AsyncClient) -> None:
    # `curl -X POST .../dev/token`: the body is optional, as the docs say.
    response = await local.post(DEV_TOKEN_PATH)
    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer"
    form = await local.post(DEV_TOKEN_PATH, content=b"a=1", headers={"Content-Type": "text/plain"})
    assert form.status_code == 415


def test_the_switch_and_the_banner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from eventlog import endpoints
    from local.__main__ import parse_args
    from local.stack import print_banner

    assert parse_args([]).auth is True  # on unless asked
    config = parse_args(["--auth", "off", "--dev-secret-file", str(tmp_path / "s")])
    assert (config.auth, config.dev_secret_file) == (False, tmp_path / "s")
    monkeypatch.setenv("LOCAL_AUTH", "off")
    assert parse_args([]).auth is False

    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8005")
    outputs = {endpoints.EDGE_STACK: {endpoints.DEMO_URL: "http://127.0.0.1:8000/"}}
    print_banner(outputs, config)
    assert "AUTH IS OFF" in capsys.readouterr().out
    on = parse_args([])
    outputs[endpoints.EDGE_STACK][endpoints.LOCAL_DEV_TOKEN_URL] = "http://127.0.0.1:8000/dev/token"
    print_banner(outputs, dataclasses.replace(on, auth=True))
    banner = capsys.readouterr().out
    assert "AUTH IS OFF" not in banner
    assert "POST http://127.0.0.1:8000/dev/token" in banner
    assert "python -m client token" in banner
