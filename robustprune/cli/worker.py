"""``robustprune worker``: add trials to a search that another process coordinates through a shared storage."""

from __future__ import annotations

import argparse
import math

from robustprune.cli import _common as c
from robustprune.cli._config import param_default

HELP = "Add trials to a search that `robustprune search --storage URL` coordinates."
EXAMPLES = """examples:
  robustprune worker --storage postgresql://user:password@dbhost/robustprune
  robustprune worker --storage journal:/shared/search.log --study r20
  robustprune worker --storage postgresql://u:pw@db/rp --model mypkg.nets:build --weights net.pt --allow-code"""


def _seconds(text: str) -> float:
    """A wait in seconds: a number >= 0 (inf: for ever)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def add_parser(add) -> None:
    from robustprune.search.worker import run_worker

    p = add("worker", HELP, EXAMPLES)
    p.add_argument("--storage", required=True, help="the coordinator's storage: postgresql://... or journal:FILE")
    p.add_argument(
        "--study",
        default=param_default(run_worker, "study_name"),
        help="the search's --study name (default %(default)s)",
    )
    p.add_argument("--model", help="load the model from here instead of the coordinator's reference (same weights)")
    p.add_argument("--weights", help="state dict for a package.module:factory model (weights_only=True)")
    p.add_argument("--allow-code", action="store_true", help="let a package.module:factory model reference run")
    c.add_device_arg(p, "cpu or cuda: where this worker scores its trials")
    p.add_argument(
        "--wait",
        type=_seconds,
        help="give up after this many seconds without a published search or a live coordinator (default: wait)",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustprune.search.worker import run_worker

    c.check_device(args.device)
    c.check_storage(args.storage)
    c.quiet_trial_failures(args)
    report = run_worker(
        args.storage,
        args.study,
        model_ref=args.model,
        weights=args.weights,
        allow_code=args.allow_code,
        device=args.device,
        wait=args.wait,
        log=(lambda m: None) if args.quiet else (lambda m: print(m, flush=True)),
    )
    print(f"worker: {sum(report.trials.values())} trials in {report.seconds:.0f}s; search {report.status}")
    return 0
