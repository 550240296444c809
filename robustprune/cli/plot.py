"""``robustprune plot``: redraw a run's plots, or compare several runs' fronts."""

from __future__ import annotations

import argparse
from pathlib import Path

from robustprune.cli import _common as c

HELP = "Redraw a run's plots, or compare several runs' fronts on one figure."
EXAMPLES = """examples:
  robustprune plot runs/r20                      # redraw runs/r20/plots
  robustprune plot runs/r20-tpe runs/r20-cmaes --out compare   # fronts of several runs on one figure"""


def add_parser(add) -> None:
    p = add("plot", HELP, EXAMPLES)
    p.add_argument("runs", nargs="+", help="search run folders")
    p.add_argument("--out", help="output folder (default: RUN/plots for one run, . for several)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustprune.plots import plot_compare, plot_run

    for folder in args.runs:
        if not (Path(folder) / "history.json").is_file():
            raise c.UsageError(f"{folder} is not a search run folder (no history.json)")
        missing = [name for name in ("front.json", "spec.json") if not (Path(folder) / name).is_file()]
        if missing:
            raise c.UsageError(f"{folder} is an incomplete search run folder (no {' or '.join(missing)})")
    if args.out:  # a folder, made with any missing folders above it (as for every --out)
        if Path(args.out).exists() and not Path(args.out).is_dir():
            raise c.UsageError(f"{args.out} is a file; --out takes a folder")
        c.check_run_parent(Path(args.out))
    if len(args.runs) == 1:
        written = plot_run(args.runs[0], args.out)
    else:
        out = Path(args.out or ".")
        out.mkdir(parents=True, exist_ok=True)
        written = plot_compare(args.runs, out / "compare_fronts")
    if not args.quiet:
        print("wrote " + ", ".join(str(p) for p in written))
    return 0
