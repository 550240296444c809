"""The ``robustprune`` command line.

Exit codes: 0 success, 2 bad usage or missing inputs (one line on stderr saying why),
130 interrupted. Output files are written atomically, so Ctrl-C never leaves a
half-written result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from robustprune import __version__

EXAMPLES = {
    "eval": """examples:
  robustprune eval --model zoo:resnet20
  robustprune eval --model zoo:cnn --json cnn.json --quiet
  robustprune eval --model mypkg.nets:build --weights net.pt --json out.json
  robustprune eval --model traced.ts --eps 0.05 --n-attack 2000""",
    "zoo": """examples:
  robustprune zoo
  robustprune zoo --json""",
}


class UsageError(Exception):
    """Bad input from the user: reported in one line with exit code 2."""


def _check_output_path(path: str) -> Path:
    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"output folder {parent} is not writable")
    return out


def _cmd_eval(args: argparse.Namespace) -> int:
    from robustprune._io import atomic_write_json
    from robustprune.evaluate.harness import EvalSettings, evaluate, format_report
    from robustprune.models import load_model

    out = _check_output_path(args.json) if args.json else None
    try:
        settings = EvalSettings(eps=args.eps, pgd_steps=args.pgd_steps, n_attack=args.n_attack,
                                n_corruption=args.n_corruption, seed=args.seed,
                                latency=not args.no_latency)  # fmt: skip
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    model, spec = load_model(args.model, weights=args.weights, allow_pickle=args.allow_pickle, device=args.device)
    report = evaluate(model, spec, root=args.data_root, settings=settings, device=args.device,
                      model_ref=args.model, quiet=args.quiet)  # fmt: skip
    if out:
        atomic_write_json(out, report)
    if not args.quiet:
        print(format_report(report, title=f"{args.model}"))
        if out:
            print(f"wrote {out}")
    return 0


def _cmd_zoo(args: argparse.Namespace) -> int:
    from robustprune import zoo

    manifest = zoo.manifest()
    rows = [{"name": n, "test_accuracy": manifest.get(n, {}).get("test_accuracy")} for n in zoo.names()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            acc = f"{100 * row['test_accuracy']:.2f}%" if row["test_accuracy"] is not None else "not trained"
            print(f"zoo:{row['name']:<12} test accuracy {acc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustprune",
        description="Data-free, robustness-preserving structured pruning of pretrained PyTorch models.",
    )
    parser.add_argument("--version", action="version", version=f"robustprune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES.get(name),
                              formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip

    p = add("eval", "Evaluate a model on real Fashion-MNIST: accuracy, FGSM/PGD robustness, corruptions, "
                    "OOD AUROC, calibration, MACs, params, latency.")  # fmt: skip
    p.add_argument("--model", required=True, help="zoo:NAME, a TorchScript file, or package.module:factory")
    p.add_argument("--weights", help="state dict for the model (loaded with weights_only=True)")
    p.add_argument("--allow-pickle", action="store_true", help="allow full pickles in --weights (trusted files only)")
    p.add_argument("--json", metavar="OUT", help="write the report as JSON to OUT")
    p.add_argument("--data-root", help="folder with the Fashion-MNIST IDX .gz files")
    p.add_argument("--eps", type=float, default=0.1, help="L-inf attack radius in [0,1] pixel space (default 0.1)")
    p.add_argument("--pgd-steps", type=int, default=10)
    p.add_argument("--n-attack", type=int, default=1000, help="test images attacked (fixed seeded subset)")
    p.add_argument("--n-corruption", type=int, default=1000, help="test images per corruption and severity")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--quiet", action="store_true", help="no progress or table output")
    p.set_defaults(func=_cmd_eval)

    p = add("zoo", "List the reference models shipped with robustprune.")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_zoo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from robustprune.data.fashion_mnist import DataNotFoundError
    from robustprune.models import ModelRefError
    from robustprune.spec import SpecError

    try:
        return args.func(args)
    except (UsageError, ModelRefError, SpecError, DataNotFoundError, FileNotFoundError) as exc:
        print(f"robustprune {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("robustprune: interrupted; no partial output was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
