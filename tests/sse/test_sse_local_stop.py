"""``make dev`` with an SSE stream open (a browser tab on the demo) stops as quietly as without."""

from __future__ import annotations

import contextlib
from pathlib import Path

pytest_plugins = ("tests.e2e_support",)


def test_ctrl_c_with_an_sse_stream_open_stops_cleanly(tmp_path: Path) -> None:
    """An open stream (a browser tab on the demo) neither delays the stop nor logs a traceback."""
    import threading

    import httpx

    from tests.e2e_support import launched, stop

    with launched(tmp_path) as (process, stack):
        assert stack.endpoints.dev_token_url
        assert stack.endpoints.sse_url
        token = httpx.post(stack.endpoints.dev_token_url).json()["token"]
        received: list[str] = []
        opened = threading.Event()

        def read_stream() -> None:
            url = f"{stack.endpoints.sse_url}/channels/stop-test/stream"
            headers = {"Authorization": f"Bearer {token}"}
            with (
                contextlib.suppress(httpx.HTTPError),
                httpx.stream("GET", url, headers=headers, timeout=30) as response,
            ):
                for line in response.iter_lines():
                    received.append(line)
                    opened.set()
            opened.set()

        reader = threading.Thread(target=read_stream, daemon=True)
        reader.start()
        assert opened.wait(10), "the stream sent nothing within 10 s"
        stop(process)  # SIGINT, as Ctrl-C sends
        assert process.returncode == 0
        reader.join(10)
        assert not reader.is_alive(), "the stream stayed open after the stack stopped"
    assert any(line.startswith("retry:") for line in received)
    output = stack.log_file.read_text(errors="replace")
    assert "Traceback" not in output, output
    assert "CancelledError" not in output, output
    assert "ERROR" not in output, output
