"""``python -m bench``: run the benchmark and write the results, the page and the charts.

::

    python -m bench                        # full run (minutes): bench/results.json,
                                           # docs/TRADEOFFS.md, docs/charts/*.png and
                                           # the README's tables (bench.readme)
    python -m bench --quick --out DIR      # seconds: DIR/results.json, DIR/TRADEOFFS.md, ...
    python -m bench --outputs .local/deployed-outputs.json   # latency and wire costs of
                                           # that stack (the fan-outs always run locally)
    python -m bench --report-only          # regenerate the page from bench/results.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import bench  # noqa: F401  (first: makes the functions importable from a checkout)
from bench.plan import FULL, QUICK

ROOT = Path(__file__).resolve().parent.parent
RESULTS_FILE = ROOT / "bench" / "results.json"
PAGE = ROOT / "docs" / "TRADEOFFS.md"
CHARTS = ROOT / "docs" / "charts"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N, seconds (what CI runs)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write results.json, TRADEOFFS.md and charts/ into this folder instead",
    )
    parser.add_argument(
        "--outputs",
        type=Path,
        default=None,
        metavar="PATH",
        help="measure the stack of this endpoints file instead of starting the local one",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="bearer token for the stack (default: BENCH_TOKEN, else the local stack's "
        "development tokens; see bench.auth)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="only regenerate the page and charts"
    )
    args = parser.parse_args(argv)

    from bench import run

    if args.out is None:
        results_file, page, charts = RESULTS_FILE, PAGE, CHARTS
    else:
        results_file, page, charts = (
            args.out / "results.json",
            args.out / "TRADEOFFS.md",
            (args.out / "charts"),
        )
    if args.report_only:
        results = json.loads(results_file.read_text())
    else:
        plan = QUICK if args.quick else FULL
        try:
            results = run.measure(plan, outputs=args.outputs, token=args.token)
        except run.TransportsMissing as exc:
            print(f"python -m bench: {exc}", file=sys.stderr)
            return 2
    run.write(results, results_file=results_file, page=page, charts=charts)
    print(f"wrote {results_file}, {page} and {charts}/", file=sys.stderr)
    if args.out is None and args.outputs is None:
        # The README's table speaks of the local run only: a deployment's figures stay on
        # their own page.
        from bench import readme

        readme.update()
        print(f"rewrote the generated tables of {readme.README}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
