"""The demo page in a real browser: headless Chromium (Debian's), driven by Playwright.

The page is loaded from the local stack, exactly as ``make dev`` serves it (auth on:
the page fetches development tokens), and must show each published event once, in
order, in all three panels, also across a dropped and resumed connection. Every test
that uses a stack runs on the orderly one and under disorder (``local.disorder``); the
ones that check the page alone (its messages, its sequencer, its intervals) once. Any
console error on the page fails the test: a page that works but logs errors would
hide the next real one.

Chromium comes from the system (``apt-get install chromium``), never from a
Playwright download: the test fails, not skips, where it is missing, because CI
installs it and must run this test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect, sync_playwright

from local.transports import PACKAGES, present_transports

if TYPE_CHECKING:
    from tests.e2e_support import LocalStack


ROOT = Path(__file__).resolve().parent.parent

TRANSPORTS = present_transports()
"""The panels of the transports this checkout has; the others' are hidden (checked below)."""
SCREENSHOT = ROOT / ".local" / "artifacts" / "demo.png"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium calls home at start, and this machine's closed network
    # refuses it noisily.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN_TTL = 3
"""Seconds a development token lives in the expiry test."""
EXPECT_TIMEOUT_MS = 10_000
"""How long an expectation waits for the page: generous, a loaded CI machine is slow."""


# --- Browser ------------------------------------------------------------------------------------


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail(
            f"Chromium is not installed (looked for {path}): run `apt-get install chromium` "
            "(Debian's package; the browser test never downloads one)"
        )
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class ConsoleErrors:
    """Console errors and uncaught exceptions of a page, minus those a test expects."""

    def __init__(self, page: Page) -> None:
        self.seen: list[str] = []
        self.allowed: list[re.Pattern[str]] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.seen.append(f"uncaught: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not any(p.search(message.text) for p in self.allowed):
            self.seen.append(f"console: {message.text} at {message.location}")


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, ConsoleErrors]]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(EXPECT_TIMEOUT_MS)
    errors = ConsoleErrors(page)
    yield page, errors
    context.close()
    assert errors.seen == [], "the page logged errors:\n" + "\n".join(errors.seen)


# --- Helpers ------------------------------------------------------------------------------------


def panel(page: Page, transport: str) -> Locator:
    return page.locator(f'section[data-transport="{transport}"]')


def seqs(page: Page, transport: str) -> list[int]:
    rows = panel(page, transport).locator("li[data-seq]")
    return [int(seq) for seq in rows.evaluate_all("rows => rows.map(row => row.dataset.seq)")]


def publish(page: Page, text: str) -> int:
    """Publish through the page's own form; returns the seq the API gave the event."""
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Publish").click()
    status = page.locator("#publish-status")
    expect(status).to_have_text(re.compile(r"^Published #\d+ "))
    match = re.search(r"#(\d+)", status.inner_text())
    assert match is not None
    return int(match.group(1))


def expect_row(page: Page, transport: str, seq: int, text: str) -> None:
    row = panel(page, transport).locator(f'li[data-seq="{seq}"]')
    expect(row).to_have_count(1)
    expect(row.locator(".data")).to_have_text(text)
    expect(row.locator(".latency")).to_have_text(re.compile(r"^\d+ ms$"))


def expect_state(page: Page, transport: str, state: str) -> None:
    expect(panel(page, transport).locator(".state")).to_have_attribute("data-state", state)


# --- Tests --------------------------------------------------------------------------------------


def test_every_panel_shows_each_event_once_also_across_a_dropped_connection(
    request: pytest.FixtureRequest, mode: str, page: tuple[Page, ConsoleErrors]
) -> None:
    """The core of the page, on the orderly stack and under disorder (``local.disorder``)."""
    from tests.e2e_support import stack_for

    local_stack = stack_for(request, mode)
    tab, _errors = page
    assert local_stack.endpoints.demo_url is not None
    tab.goto(local_stack.endpoints.demo_url)
    expect(tab.locator("#endpoints")).to_have_attribute("data-kind", "ok")
    # Auth is on, as `make dev` runs it: the page fetched a development token.
    expect(tab.locator("#endpoints")).to_contain_text("development tokens from the local stack")
    for transport in TRANSPORTS:
        expect_state(tab, transport, "open")
    for absent in set(PACKAGES) - set(TRANSPORTS):
        expect(panel(tab, absent)).to_be_hidden()

    first = publish(tab, "first")
    for transport in TRANSPORTS:
        expect_row(tab, transport, first, "first")

    # Drop every connection, publish while they are down, and let them resume.
    for transport in TRANSPORTS:
        panel(tab, transport).get_by_role("button", name="Drop & resume").click()
        expect_state(tab, transport, "closed")
    while_dropped = publish(tab, "while dropped")
    for transport in TRANSPORTS:
        expect_row(tab, transport, while_dropped, "while dropped")
        expect_state(tab, transport, "open")
        # The resumed connection delivered it: the panel's cursor was still before it.
        notices = panel(tab, transport).locator("li.notice")
        expect(notices.filter(has_text="Resuming after")).to_have_text(
            [f"Resuming after #{first}."]
        )

    after = publish(tab, "after resume")
    for transport in TRANSPORTS:
        expect_row(tab, transport, after, "after resume")
    print()
    for transport in TRANSPORTS:
        # Each event once, in order: nothing lost in the drop, nothing repeated by the resume.
        assert seqs(tab, transport) == [first, while_dropped, after], transport
        # Figures, not asserts: latency on a shared CI machine says little on its own.
        stats = panel(tab, transport).locator("dl.stats div").all_inner_texts()
        latencies = panel(tab, transport).locator("li[data-seq] .latency").all_inner_texts()
        figures = " | ".join(stat.replace("\n", " ") for stat in stats)
        print(f"{transport:>9}: latency {', '.join(latencies)} | {figures}")

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOT))
    print(f"screenshot: {SCREENSHOT}")


def test_short_lived_tokens_are_renewed_and_an_expired_stream_resumes(
    request: pytest.FixtureRequest, mode: str, page: tuple[Page, ConsoleErrors]
) -> None:
    from tests.e2e_support import stack_for

    local_stack = stack_for(request, mode)
    tab, _errors = page
    assert local_stack.endpoints.demo_url is not None
    # Every development token the page asks for lives 3 s instead of an hour.
    tab.route(
        "**/dev/token", lambda route: route.continue_(post_data=json.dumps({"ttl": TOKEN_TTL}))
    )
    tab.goto(local_stack.endpoints.demo_url)
    for transport in TRANSPORTS:
        expect_state(tab, transport, "open")
    first = publish(tab, "before expiry")
    if "sse" in TRANSPORTS:
        # The SSE stream ends with `event: expired`; the page reconnects with a fresh token.
        notices = panel(tab, "sse").locator("li.notice").filter(has_text="token expired")
        expect(notices.first).to_be_visible(timeout=(TOKEN_TTL + 5) * 1000)
    else:
        tab.wait_for_timeout((TOKEN_TTL + 1) * 1000)  # past the first token's expiry
    second = publish(tab, "after expiry")
    for transport in TRANSPORTS:
        expect_row(tab, transport, second, "after expiry")
        assert seqs(tab, transport) == [first, second], transport


def test_a_refused_publish_shows_the_problem_detail(
    request: pytest.FixtureRequest, mode: str, page: tuple[Page, ConsoleErrors]
) -> None:
    from tests.e2e_support import stack_for

    local_stack = stack_for(request, mode)
    tab, errors = page
    assert local_stack.endpoints.demo_url is not None
    tab.goto(local_stack.endpoints.demo_url)
    expect_state(tab, TRANSPORTS[0], "open")
    # The browser reports the refused request itself; that one is expected.
    errors.allowed.append(re.compile(r"status of 413"))
    publish_button = tab.get_by_role("button", name="Publish")
    tab.get_by_label("Message").fill("x" * 40_000)
    publish_button.click()
    expect(tab.locator("#publish-status")).to_have_text(
        re.compile(r"^Not published: .*(too large|bytes)")
    )
    expect(tab.locator("#publish-status")).to_have_attribute("data-kind", "error")


def test_a_missing_endpoints_file_is_a_clear_message(
    local_stack: LocalStack, page: tuple[Page, ConsoleErrors]
) -> None:
    tab, errors = page
    assert local_stack.endpoints.demo_url is not None
    errors.allowed.append(re.compile(r"status of 404"))
    tab.goto(local_stack.endpoints.demo_url + "?outputs=missing.json")
    message = tab.locator("#endpoints")
    expect(message).to_have_attribute("data-kind", "error")
    expect(message).to_contain_text("Could not load the endpoints file")
    expect(message).to_contain_text("missing.json")
    expect(tab.get_by_role("button", name="Publish")).to_be_disabled()


def idle_page(local_stack: LocalStack, page: tuple[Page, ConsoleErrors]) -> Page:
    """The page with no endpoints: it stays idle, and its modules are there to import."""
    tab, errors = page
    assert local_stack.endpoints.demo_url is not None
    errors.allowed.append(re.compile(r"status of 404"))
    tab.goto(local_stack.endpoints.demo_url + "?outputs=none.json")
    return tab


def test_the_sequencer_drops_repeats_backfills_gaps_and_follows_resets(
    local_stack: LocalStack, page: tuple[Page, ConsoleErrors]
) -> None:
    """The page's exactly-once logic, run in the browser against a scripted log."""
    tab = idle_page(local_stack, page)
    result = tab.evaluate(
        """async () => {
        const { Sequencer } = await import("./sequencer.js");
        const time = new Date().toISOString();
        const event = (seq) => ({ channel: "c", seq, data: { n: seq }, time });
        let log = [1, 2, 3, 4, 5, 6, 7].map(event);
        const shown = [], notes = [], reads = [];
        let oldest = 1;
        const sequencer = new Sequencer({
          cursor: 0,
          fetchAfter: async (after) => {  // the log's page read, as log.py answers it
            reads.push(after);
            const head = log.length ? log[log.length - 1].seq : 0;
            const reset = after < oldest - 1 || after > head;
            const from = reset ? oldest - 1 : after;
            return { events: log.filter((e) => e.seq > from).slice(0, 2), reset, oldest };
          },
          deliver: (e, how) => shown.push(how.backfilled ? `${e.seq}b` : `${e.seq}`),
          note: (info) => notes.push(info.kind),
        });
        sequencer.offer(event(1));
        sequencer.offer(event(1));   // a repeat
        sequencer.offer(event(5));   // a gap: 2-4 read back (two pages), then 5
        sequencer.offer(event(3));   // late and already shown
        await sequencer.idle();
        const before = sequencer.cursor;
        oldest = 9;
        log.push(event(8), event(9), event(10));
        sequencer.reset(9);          // history before 9 expired
        sequencer.offer(event(9));
        sequencer.reset(9);          // a late answer to an older cursor: the log says
        await sequencer.idle();      // the cursor is fine, so nothing moves
        const afterExpiry = sequencer.cursor;
        log = [event(1)];            // the log was wiped and has one new event
        oldest = 1;
        sequencer.reset(1);          // the log confirms: start over
        sequencer.offer(event(1));
        await sequencer.idle();
        return { shown, notes, reads, before, afterExpiry, cursor: sequencer.cursor };
    }"""
    )
    assert result == {
        "shown": ["1", "2b", "3b", "4b", "5b", "9", "1"],
        "notes": ["duplicate", "gap", "duplicate", "reset", "reset"],
        "reads": [1, 3, 9, 9],
        "before": 5,
        "afterExpiry": 9,
        "cursor": 1,
    }, json.dumps(result)


def test_the_page_keeps_the_same_intervals_as_the_python_client(
    local_stack: LocalStack, page: tuple[Page, ConsoleErrors]
) -> None:
    """One figure each: the cost model prices the Python client's, so the page must match."""
    from client.config import DEFAULT_WAIT_SECONDS, WEBSOCKET_KEEPALIVE_SECONDS

    tab = idle_page(local_stack, page)
    intervals = tab.evaluate(
        """async () => {
        const { LONG_POLL_SECONDS, WEBSOCKET_PING_MS } = await import("./transports.js");
        return [LONG_POLL_SECONDS, WEBSOCKET_PING_MS];
    }"""
    )
    assert intervals == [DEFAULT_WAIT_SECONDS, WEBSOCKET_KEEPALIVE_SECONDS * 1000]
