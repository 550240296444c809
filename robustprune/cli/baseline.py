"""``robustprune baseline``: one-shot pruning by a data-free baseline method, then the evaluation."""

from __future__ import annotations

import argparse
import sys

from robustprune.cli import _common as c
from robustprune.cli import _output
from robustprune.cli._config import param_default

HELP = "Prune a model one-shot with a data-free baseline method, then evaluate it."
EXAMPLES = """examples:
  robustprune baseline --model zoo:resnet20 --method l1_uniform --target-macs 0.5 --out runs/r20-l1
  robustprune baseline --model zoo:mlp --method paoding --target-params 0.5 --out runs/mlp-paoding
  robustprune baseline --model zoo:cnn --method global_magnitude --target-macs 0.7 --no-eval --out runs/cnn-gm"""


def add_parser(add) -> None:
    from robustprune.baselines.oneshot import METHODS, baseline  # the defining module: defaults read from it

    p = add("baseline", HELP, EXAMPLES)
    c.add_model_args(p, prune=True)
    c.add_exclude_arg(p)
    c.add_input_spec_args(p)
    c.add_eval_data_args(p)
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--target-macs", type=c.fraction, help="fraction of the original MACs to keep, e.g. 0.5")
    p.add_argument("--target-params", type=c.fraction, help="fraction of the original parameters to keep")
    p.add_argument("--seed", type=int, default=param_default(baseline, "seed"))
    p.add_argument(
        "--round-to",
        type=c.positive_int,
        default=param_default(baseline, "round_to"),
        help="keep each group's channels at a multiple of N (uniform baselines; default %(default)s)",
    )
    c.add_run_out_args(p, "run folder: gets pruned.pt, spec.json, report.json")
    c.add_report_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustprune.baselines import INPUT_CRITERIA, baseline
    from robustprune.models import canonical_ref

    if args.target_macs is None and args.target_params is None:
        raise c.UsageError("give --target-macs and/or --target-params (fraction of the original to keep)")
    if args.method == "paoding" and args.target_macs is not None and args.target_params is not None:
        raise c.UsageError("the paoding baseline takes one target: --target-macs or --target-params")
    if args.round_to != 1 and args.method in ("global_magnitude", "paoding"):
        raise c.UsageError(f"--round-to applies to the uniform baselines, not {args.method}")
    out = c.check_run_dir(args, "baseline")
    c.check_eval_data(args)
    model, spec = c.load_model_from_args(args, prune=True)
    exclude = c.check_exclude(model, args.exclude)
    inputs = None
    if args.method in INPUT_CRITERIA:  # ranks channels on the search's default synthetic inputs (disk-cached)
        from robustprune.probes.cache import cached_generate
        from robustprune.search.engine import SEARCH_PROBES

        synthetic = SEARCH_PROBES.seeded(args.seed).synthetic
        progress = None if args.quiet else (lambda m: print(f"[synthesis] {m}", file=sys.stderr, flush=True))
        inputs = spec.normalize(cached_generate(model, spec, synthetic, progress=progress).pixels)
    targets = {"target_macs": args.target_macs, "target_params": args.target_params}
    result = baseline(
        model, spec, args.method, **targets, seed=args.seed, inputs=inputs, round_to=args.round_to, exclude=exclude
    )
    reached = result.kept_fraction
    if not args.quiet:
        print(
            f"{args.method}: kept {100 * reached['macs']:.1f}% of MACs, {100 * reached['params']:.1f}% of params",
            file=sys.stderr,
        )
    _output.save_run(args, out, lambda staging: result.save(staging, model_ref=canonical_ref(args.model)))
    report = _output.report_for_run(result.model, spec, f"{args.model} ({args.method})", args, original=model)
    report["provenance"].update(
        method=args.method,
        target={"macs": args.target_macs, "params": args.target_params},
        seed=args.seed,
        round_to=args.round_to,
        exclude=sorted(exclude),
    )
    return _output.finish_run(args, out, args.method, report, "pruned.pt, spec.json, report.json")
