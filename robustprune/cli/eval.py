"""``robustprune eval``: evaluate a model on real data (Fashion-MNIST, or the user's own)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robustprune.cli import _common as c
from robustprune.cli._config import Flag, add_flags, build, values

HELP = (
    "Evaluate a model on real data (Fashion-MNIST, or yours with --data): accuracy, FGSM/PGD robustness, "
    "corruptions, OOD AUROC, calibration, MACs, params, latency."
)
EXAMPLES = """examples:
  robustprune eval --model zoo:resnet20
  robustprune eval --model zoo:cnn --json cnn.json --quiet
  robustprune eval --model mypkg.nets:build --weights net.pt --json out.json
  robustprune eval --model traced.ts --eps 0.05 --n-attack 2000
  robustprune eval --model torchvision:resnet18 --weights r18.pt --input-shape 3,32,32 --num-classes 10 \\
      --mean 0.49,0.48,0.45 --std 0.25,0.24,0.26 --data cifar_test/
  robustprune eval --model runs/mine --data unlabeled.npz --original mypkg.nets:build --original-weights net.pt \\
      --allow-code                               # runs/mine was pruned from mypkg.nets:build
  robustprune eval --model runs/r20-int8          # a run folder: pruned, or int8 from quantize"""

#: EvalSettings fields with a flag of their own
SETTINGS = (
    Flag("eps", help="L-inf attack radius as a fraction of the pixel range (default %(default)s)"),
    Flag("pgd_steps"),
    Flag("n_attack", help="test images attacked (fixed seeded subset)"),
    Flag("n_corruption", help="test images per corruption and severity"),
    Flag("seed"),
)


def add_parser(add) -> None:
    from robustprune.evaluate.harness import EvalSettings

    p = add("eval", HELP, EXAMPLES)
    c.add_model_args(p, allow_code=True)
    p.add_argument(
        "--json",
        metavar="OUT",
        help="write the report as JSON to OUT (an earlier eval report there is replaced; any other file is kept)",
    )
    c.add_input_spec_args(p)
    c.add_eval_data_args(p)
    p.add_argument("--original", metavar="REF", help="the unpruned model: agreement with it on --data")
    p.add_argument("--original-weights", metavar="FILE", help="state dict for --original")
    p.add_argument("--data-root", help=c.DATA_ROOT_HELP)
    add_flags(p, EvalSettings, SETTINGS)
    c.add_device_arg(p)
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--quiet", action="store_true", help="no progress or table output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustprune._io import atomic_write_json
    from robustprune.evaluate.harness import EvalSettings, evaluate, format_report
    from robustprune.models import load_model

    out = c.check_output_path(args.json) if args.json else None
    if out is not None:
        from robustprune._io import OWNED_FILES, run_kind

        if out.name in OWNED_FILES and run_kind(out.parent) is not None:
            raise c.UsageError(f"--json {out} is a file of a robustprune run folder; choose another file")
        if out.exists() and not _is_eval_report(out):
            raise c.UsageError(
                f"--json {out} exists and is not an eval report (only those are replaced); choose another file"
            )
    try:
        settings = build(EvalSettings, values(args, SETTINGS), latency=not args.no_latency)
    except ValueError as exc:
        raise c.UsageError(str(exc)) from exc
    c.check_device(args.device)
    if args.original_weights and not args.original:
        raise c.UsageError("--original-weights needs --original REF")
    if args.original and not args.data:
        raise c.UsageError("--original is for --data (agreement on your own data)")
    if not args.data:
        c.check_eval_data(args, required=True)
    if Path(args.model).is_dir() and _is_int8_run(args.model):  # int8 from quantize: its exported program
        model, spec = _load_run_folder(args)
        c.check_user_data(args, spec)
    else:
        model, spec = c.load_model_from_args(args)
    original = None
    if args.original:
        original, _ = load_model(
            args.original,
            weights=args.original_weights,
            spec=spec,
            allow_pickle=args.allow_pickle,
            device=args.device,
            trust_code=args.allow_code,
        )
    data = c.user_data_kwargs(args) if args.data else {"data": "fashion-mnist"}
    report = evaluate(
        model,
        spec,
        root=args.data_root,
        settings=settings,
        device=args.device,
        model_ref=args.model,
        quiet=args.quiet,
        original=original,
        **data,
    )
    if out:
        atomic_write_json(out, report)
    if not args.quiet:
        print(format_report(report, title=f"{args.model}"))
        if out:
            print(f"wrote {out}")
    return 0


def _is_int8_run(folder: str) -> bool:
    from robustprune.quantize.run import is_quantized_run

    return is_quantized_run(Path(folder))


def _load_run_folder(args: argparse.Namespace):
    """(model, spec) of a run folder given as ``eval --model``: its int8 program when it has one, else pruned.pt."""
    from robustprune.quantize.run import is_quantized_run, load_quantized_run
    from robustprune.structure import load_pruned

    folder = Path(args.model)
    if is_quantized_run(folder):
        if args.device != "cpu":
            raise c.UsageError("an int8 run folder is evaluated on the CPU (--device cpu)")
        model, spec, _info = load_quantized_run(folder, allow_pickle=args.allow_pickle, trust_code=args.allow_code)
        return model, spec
    if not (folder / "spec.json").is_file():
        raise c.UsageError(f"{folder} is a folder but not a run folder (no spec.json)")
    model, spec, _data = load_pruned(folder, allow_pickle=args.allow_pickle, trust_code=args.allow_code)
    return model.to(args.device), spec


def _is_eval_report(path: Path) -> bool:
    """``path`` holds a JSON report an earlier eval wrote, so replacing it loses nothing the user made."""
    try:
        report = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(report, dict) and {"clean_accuracy", "provenance"} <= report.keys()
