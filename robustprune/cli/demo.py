"""``robustprune demo``: the main job on the built-in default model, compared before and after."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robustprune.cli import _common as c
from robustprune.cli import _output
from robustprune.cli._config import Flag, add_flags, build, values

HELP = "The main job on the built-in default: search-prune zoo:resnet20 to half its MACs and compare."
EXAMPLES = """examples:
  robustprune demo                              # zoo:resnet20 to half its MACs, into runs/demo
  robustprune demo --model zoo:cnn --target-macs 0.7 --out runs/cnn-demo"""
DEMO_OUT = "runs/demo"
#: SearchConfig fields the demo lets one change
CONFIG = (Flag("trials", type=c.positive_int, help="Optuna trials per step"), Flag("seed"))


def add_parser(add) -> None:
    from robustprune.search import SearchConfig

    p = add("demo", HELP, EXAMPLES)
    p.add_argument("--model", default="zoo:resnet20")
    p.add_argument("--target-macs", type=c.fraction, default=0.5)
    add_flags(p, SearchConfig, CONFIG)
    p.add_argument("--out", default=DEMO_OUT)
    p.add_argument("--overwrite", action="store_true", help=c.OVERWRITE_HELP)
    p.add_argument("--data-root", help=c.DATA_ROOT_HELP)
    p.add_argument(
        "--eps",
        type=c.eps,
        default=0.01,
        help="L-inf radius of the before/after attacks (default %(default)s, smaller than eval's: one at which the "
        "zoo models still differ in robustness; docs/defaults.md)",
    )
    p.add_argument("--quiet", action="store_true", help="no per-trial progress")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustprune._io import atomic_write_json
    from robustprune.data.fashion_mnist import INSTALL_HINT, fashion_mnist_available
    from robustprune.evaluate.harness import format_table
    from robustprune.models import load_model
    from robustprune.plots import plot_run
    from robustprune.search import SearchConfig, search

    try:
        config = build(SearchConfig, values(args, CONFIG), target_macs=args.target_macs)
    except ValueError as exc:
        raise c.UsageError(str(exc)) from exc
    if args.out == DEMO_OUT:
        Path(DEMO_OUT).parent.mkdir(exist_ok=True)  # the default lives in ./runs, made on first use
    out = c.check_run_dir(args, "demo")
    c.check_eval_data(args)
    model, spec = load_model(args.model)
    has_data = fashion_mnist_available(args.data_root)
    print(
        f"robustprune demo: {args.model} -> at most {100 * args.target_macs:.0f}% of its MACs, no data used for "
        "pruning",
        file=sys.stderr,
    )
    before = _output.report_for_run(model, spec, args.model, args)
    c.quiet_trial_failures(args)
    result = search(model, spec, config=config, quiet=args.quiet)

    def write(staging: Path) -> None:
        result.save(staging, model_ref=args.model)
        atomic_write_json(staging / "original.json", before)
        plot_run(staging, staging / "plots")

    _output.save_run(args, out, write)
    after = _output.report_for_run(result.model, spec, f"{args.model} (search)", args)
    after["provenance"].update(method="search", search=result.summary())
    atomic_write_json(out / "report.json", after)
    print()
    print(format_table({"original": before, "pruned": after}))
    if not has_data:
        last = result.history[-1].proxies if result.history else {}
        print(
            "\nFashion-MNIST is not installed, so the table has no real-data metrics; the search's proxies "
            "(agreement with the original on synthetic / adversarial inputs): "
            + ", ".join(f"{k} {v:.3f}" for k, v in last.items())
        )
        print(f"Install the data to see them: {INSTALL_HINT}")
    print(
        f"\n{result.stop_reason}; {len(result.history)} steps in {result.seconds:.0f}s. Run folder: {out} "
        "(pruned.pt, spec.json, history.json, front.json, report.json, original.json, plots/)"
    )
    return 0
