"""``robustprune bench``: run a benchmark suite (models x methods x targets x seeds), resuming finished cells."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robustprune.cli import _common as c
from robustprune.cli._config import param_default

HELP = "Run a benchmark suite (models x methods x targets x seeds); resumes finished cells."
EXAMPLES = """examples:
  robustprune bench --suite quick --out runs/bench-quick
  robustprune bench --suite full --out runs/bench-full       # hours; rerun to resume
  robustprune bench --suite my_suite.json --out runs/mine"""


def add_parser(add) -> None:
    from robustprune.bench import run_suite

    p = add("bench", HELP, EXAMPLES)
    p.add_argument(
        "--suite",
        required=True,
        help="a packaged suite by name (quick, full, ablation, ...: an unknown name lists them) or a suite JSON file",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--eval-device", help="run the real-data evaluation there, e.g. cuda (pruning stays on the CPU)")
    p.add_argument("--search-device", help="run the search and its synthesis there, e.g. cuda")
    p.add_argument(
        "--summarize-only", action="store_true", help="rewrite summary.md, CSV, JSON and plots from the finished cells"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=param_default(run_suite, "workers"),
        help="cells run in parallel processes (default %(default)s)",
    )
    p.add_argument("--threads", type=int, help="torch threads per worker (default: torch's own choice)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustprune.bench import CellsFailed, load_suite, run_suite

    try:
        suite = load_suite(args.suite)
    except (FileNotFoundError, ValueError, KeyError, TypeError) as exc:  # the suite file is the user's input
        raise c.UsageError(c.one_line(exc) if not isinstance(exc, KeyError) else f"suite lacks the key {exc}") from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise c.UsageError(f"{out} exists and is not a folder")
    if args.workers < 1:
        raise c.UsageError(f"--workers must be >= 1, got {args.workers}")
    c.check_run_parent(out)
    for device in (args.eval_device, args.search_device):
        c.check_device(device)  # before hours of cells, not in the first one
    if args.summarize_only:
        from robustprune.bench import summarize_suite

        if not summarize_suite(suite, out):
            raise c.UsageError(f"no finished cells of suite {suite.name!r} in {out}")
        print((out / "summary.md").read_text())
        return 0
    c.check_eval_data(args, required=True)
    c.quiet_trial_failures(args)
    try:
        run_suite(
            suite,
            out,
            log=(lambda m: None) if args.quiet else None,
            eval_device=args.eval_device,
            search_device=args.search_device,
            workers=args.workers,
            threads=args.threads,
        )
    except CellsFailed as exc:
        print(f"robustprune bench: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print((out / "summary.md").read_text())
        print(f"wrote {out}/results.csv, results.json, summary.md, plots/")
    return 0
