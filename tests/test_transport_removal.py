"""Removing a transport as the README says leaves a project that synthesizes and runs.

For each transport, a copy of the project without it (``tests.removal_support``, the
README's list in code): the real CDK CLI synthesizes it (``cdk synth --quiet``, the same
synth ``test_cdk_app.py`` checks as its "without-X" variant), and ``python -m local``
starts in it. The other two transports then answer completely: each one publishes, and
reads back from the log, through its own endpoint; the endpoints file and the demo page's
copy of it name only them; Ctrl-C stops the stack (exit code 0).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from client import open_transport
from client.auth import DevTokens
from client.transports import OUTPUT_KEYS, TransportName, present_in
from eventlog import endpoints
from eventlog.endpoints import Endpoints
from tests.removal_support import REMOVALS, RemovedCopy

pytest_plugins = ("tests.e2e_support",)

# Three synths, shared with test_cdk_app.py, on two busy cores.
pytestmark = pytest.mark.timeout(1200)

STACK_OF = {
    "polling": endpoints.POLLING_STACK,
    "sse": endpoints.SSE_STACK,
    "websocket": endpoints.WEBSOCKET_STACK,
}


@pytest.mark.parametrize("transport", list(REMOVALS))
def test_the_copy_without_it_synthesizes(
    transport: str, removed_copies: dict[str, RemovedCopy]
) -> None:
    if transport not in removed_copies:
        pytest.skip(f"{transport} is removed from this checkout already")
    synth = removed_copies[transport].synth
    assert synth.result.returncode == 0, synth.result.stdout[-4000:]
    stacks = {path.name.removesuffix(".template.json") for path in synth.outdir.glob("*.json")}
    assert STACK_OF[transport] not in stacks
    assert {STACK_OF[other] for other in removed_copies if other != transport} <= stacks


async def publish_and_read_back(found: Endpoints, channel: str) -> None:
    """Each transport present publishes an event, then reads it back from the log."""
    assert found.dev_token_url
    tokens = DevTokens(found.dev_token_url)
    for name in present_in(found):
        async with open_transport(name, found, token=tokens) as transport:
            published = await transport.publish(f"{channel}-{name}", {"through": name})
            subscription = await transport.subscribe(f"{channel}-{name}", after=0)
            async with asyncio.timeout(20):
                assert await anext(subscription) == published, name
            await subscription.close()


@pytest.mark.parametrize("transport", list(REMOVALS))
def test_the_local_stack_runs_the_other_two(
    transport: TransportName, removed_copies: dict[str, RemovedCopy], tmp_path: Path
) -> None:
    from tests.e2e_support import launched, stop  # a plugin: pytest imports it first

    if transport not in removed_copies:
        pytest.skip(f"{transport} is removed from this checkout already")
    copy = removed_copies[transport]
    with launched(tmp_path, root=copy.root, python=copy.python) as (process, stack):
        found = stack.endpoints
        others = [name for name in removed_copies if name != transport]
        assert sorted(present_in(found)) == sorted(others)
        assert STACK_OF[transport] not in stack.outputs
        assert stack.endpoints.demo_url
        page_outputs = httpx.get(f"{stack.endpoints.demo_url}outputs.json", timeout=10).json()
        assert OUTPUT_KEYS[transport] not in str(page_outputs)  # the demo page's view too
        asyncio.run(publish_and_read_back(found, f"without-{transport}"))
        stop(process)  # SIGINT, as Ctrl-C sends
        assert process.returncode == 0
    output = stack.log_file.read_text(errors="replace")
    assert "not here" in output  # the banner says what this checkout lacks
    assert "stopping..." in output
    assert "Traceback" not in output, output  # it stops as quietly as the whole stack
