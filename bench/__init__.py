"""The benchmark: every adjective of the polling / SSE / WebSocket comparison, as a number.

``python -m bench`` (``make bench``) measures the three transports on this machine in
one run, writes ``bench/results.json`` and generates ``docs/TRADEOFFS.md`` with its
charts; ``python -m bench --quick --out DIR`` does the same in seconds with small
numbers (the test suite runs it). ``python -m bench.cost`` prices a load on AWS.

- ``bench.plan``: what a full and a quick run measure, and the token seam;
- ``bench.stack``: the local stack as a subprocess, or a deployed one's endpoints file;
- ``bench.latency``: publish -> deliver latency, bytes per event, idle cost per minute;
- ``bench.sse_fanout``: one SSE process, N raw-socket streams (also a script);
- ``bench.gateway_fanout``: the local API Gateway, the real fan-out handler, N raw
  WebSocket clients; ``bench.websocket_fanout``: the fan-out against a stub that adds
  a network-like delay, and cold-start imports (also a script);
- ``bench.footprint``: import times and Lambda asset sizes;
- ``bench.results``: the stable keys of ``results.json``; ``bench.report``: the page;
- ``bench.cost`` and ``bench/prices.json``: the AWS cost model.

Everything listens on and connects to 127.0.0.1 only.
"""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"

# ``eventlog`` and the transports live in functions/ (the Lambda layout); the Makefile
# and pytest put it on sys.path, and so does this when the package runs from a checkout.
if importlib.util.find_spec("eventlog") is None and FUNCTIONS.is_dir():
    sys.path.append(str(FUNCTIONS))
