"""What every benchmark shares: where results go, the evaluation splits, the command and provenance line.

Benchmarks run from the checkout's root as ``python -m benchmarks.NAME``; each output file names the
command that wrote it, the commit, the machine and the torch version.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from robustprune._provenance import OUTPUTS_ENV, pin_commit, provenance
from robustprune.data.fashion_mnist import load_eval_split

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
#: Images of an evaluation split that PGD attacks (a fixed draw, seed 0): attacks cost far more than clean passes.
N_ATTACK = 1000


def start(module: str, argv: Sequence[str] | None, threads: int | None = None) -> str:
    """Set the torch threads and mark results/ as output (not code) for the provenance; returns the command."""
    if threads:
        torch.set_num_threads(threads)
    os.environ[OUTPUTS_ENV] = str(RESULTS)  # for the whole process, and the workers it starts
    pin_commit()  # a commit made while this runs is not the code that ran
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python -m benchmarks." + module, *args])


def produced_by(command: str, **extra) -> str:
    """``Produced by `command` at commit ..., on machine (torch ...)`` with any ``extra`` provenance fields."""
    prov = provenance(**extra)
    more = "".join(f", {k} {v}" for k, v in extra.items())
    return f"Produced by `{command}` at commit `{prov['commit']}`{more}, on {prov['machine']} (torch {prov['torch']})"


def split(name: str = "val", n_attack: int = N_ATTACK, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(x, y, x_attack, y_attack) of an evaluation split: ``val`` = train[55000:] (never trained on) or ``test``.

    The attacked images are a fixed draw (``seed``) of ``n_attack`` of the split's images.
    """
    x, y = load_eval_split(name)
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n_attack]
    return x, y, x[idx], y[idx]


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        fn()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def append_row(path: str | Path, header: str, row: str) -> None:
    """Append ``row`` to a markdown table file, writing ``header`` first if the file is new."""
    path = Path(path)
    if not path.exists():
        path.write_text(header)
    with path.open("a") as fh:
        fh.write(row)


def subcommand_parser(doc: str) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """A parser for a benchmark with one subcommand per study (``dest="study"``)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser, parser.add_subparsers(dest="study", required=True)


def run_study(module: str, parser: argparse.ArgumentParser, studies: dict, argv: Sequence[str] | None) -> None:
    """Parse ``argv``, start (threads, command) and run the chosen study as ``studies[name](args, command)``."""
    args = parser.parse_args(argv)
    studies[args.study](args, start(module, argv, args.threads))
