"""The README's generated tables: ``make readme`` writes them, a test keeps them current.

Each lives in README.md between ``<!-- generated: NAME (make readme) -->`` and
``<!-- end: NAME -->``:

- ``comparison``: the three transports side by side (``bench.snippet``), from
  bench/results.json, the last full ``make bench`` (which also runs this), with the
  line counts of the code as it is now (``bench.footprint.code_size``), so they never
  drift from the code.
- ``cost``: where each transport wins by cost (``bench.cost.sweep_table``), priced with
  the measured figures of bench/results.json, as ``make cost`` prices one load.

``python -m bench.readme --check`` lists the stale ones and exits 1.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from bench import cost, footprint
from bench.snippet import render_snippet

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS_FILE = ROOT / "bench" / "results.json"


def _comparison() -> str:
    results = json.loads(RESULTS_FILE.read_text())
    return render_snippet({**results, "complexity": footprint.code_size()})


def _cost() -> str:
    # Priced with the measured figures, as `make cost` prices one load.
    return cost.sweep_table(deployment=cost.deployment_from_results(RESULTS_FILE))


BLOCKS: dict[str, Callable[[], str]] = {"comparison": _comparison, "cost": _cost}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- generated: {name} \(make readme\) -->\n)(.*?)(<!-- end: {name} -->)", re.S
    )


def render(text: str) -> str:
    """``text`` (a README) with every generated block rewritten from its source."""
    for name, make in BLOCKS.items():
        match = _pattern(name).search(text)
        if match is None:
            raise ValueError(f"README.md has no generated block {name!r}")
        body = "\n" + make().strip("\n") + "\n\n"
        text = text[: match.start(2)] + body + text[match.end(2) :]
    return text


def stale(text: str) -> list[str]:
    """The generated blocks of ``text`` that differ from what ``render`` would write."""
    fresh = render(text)

    def block(of: str, name: str) -> str | None:
        match = _pattern(name).search(of)
        return match.group(2) if match else None

    return [name for name in BLOCKS if block(text, name) != block(fresh, name)]


def update(path: Path = README) -> None:
    path.write_text(render(path.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.readme", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a block is stale")
    args = parser.parse_args(argv)
    if args.check:
        old = stale(README.read_text())
        if old:
            print(f"README.md: stale generated blocks {old}; run: make readme", file=sys.stderr)
            return 1
        return 0
    update()
    print("README.md: generated blocks rewritten", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
