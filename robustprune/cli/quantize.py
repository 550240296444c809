"""``robustprune quantize``: int8 post-training quantization (PT2E) of a run's model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robustprune.cli import _common as c
from robustprune.cli import _output
from robustprune.cli._config import param_default

HELP = (
    "int8 post-training quantization (PT2E) of a run's model, calibrated on synthetic inputs (no data), "
    "Gaussian noise, or real images; evaluated like any run."
)
EXAMPLES = """examples:
  robustprune quantize runs/r20 --out runs/r20-int8                          # synthetic calibration, no data
  robustprune quantize runs/r20 --out runs/r20-int8-real --calibration real --n 1000"""
#: help of RUN, --out and --original
SOURCE_HELP = (
    "run folder with spec.json and pruned.pt (from search, baseline or recover)",
    "new run folder: int8.pt2, pruned.pt, spec.json, quantize.json",
    "the unpruned model, for synthetic inputs (default: the run's model)",
)
#: the CLI's calibration source: no data needed
CALIBRATION = "synthetic"


def add_parser(add) -> None:
    from robustprune.quantize import quantize_int8
    from robustprune.quantize.ptq import BACKENDS
    from robustprune.quantize.run import CALIBRATIONS, DEFAULT_N, calibration_inputs

    p = add("quantize", HELP, EXAMPLES)
    c.add_source_run_args(p, *SOURCE_HELP)
    p.add_argument(
        "--calibration",
        default=CALIBRATION,
        choices=CALIBRATIONS,
        help="synthetic: the search's probes (default); gaussian: noise; real: Fashion-MNIST train[:N]",
    )
    n_help = ", ".join(f"{k} {v}" for k, v in DEFAULT_N.items())
    p.add_argument("--n", type=c.positive_int, help=f"calibration inputs (default: {n_help})")
    p.add_argument(
        "--backend",
        default=param_default(quantize_int8, "backend"),
        choices=BACKENDS,
        help="quantizer (default %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=param_default(calibration_inputs, "seed"),
        help="seed of the calibration inputs and the evaluation",
    )
    c.add_eval_data_args(p)
    c.add_report_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shutil
    import time

    from robustprune._io import atomic_write_json
    from robustprune.quantize import check_backend, quantize_int8, save_quantized
    from robustprune.quantize.run import INFO_FILE, PROGRAM_FILE, calibration_inputs, load_quantized_run

    check_backend(args.backend)  # a missing backend package is said now, not after reading data or calibrating
    source, out, pruned, spec, data = c.open_source_run(args, "quantize")
    original = None
    if args.calibration == "synthetic":  # the search's probes are inverted from the original's BN statistics
        _reference, original = c.load_original(args, source, data, spec)
    progress = None if args.quiet else (lambda m: print(f"[calibration] {m}", file=sys.stderr, flush=True))
    start = time.time()
    pixels = calibration_inputs(
        args.calibration, original, spec, n=args.n, seed=args.seed, data_root=args.data_root, progress=progress
    )
    program = quantize_int8(pruned, spec, pixels, backend=args.backend)
    info = {
        "source": str(source),
        "calibration": args.calibration,
        "n": int(pixels.shape[0]),
        "backend": args.backend,
        "seed": args.seed,
        "seconds": time.time() - start,
    }

    def write(staging: Path) -> None:
        save_quantized(program, staging / PROGRAM_FILE)
        for name in c.RUN_FILES:
            shutil.copyfile(source / name, staging / name)
        atomic_write_json(staging / INFO_FILE, info)

    _output.save_run(args, out, write)
    if not args.quiet:
        print(f"int8 ({args.backend}) calibrated on {info['n']} {args.calibration} inputs", file=sys.stderr)
    model, spec, _info = load_quantized_run(out, allow_pickle=args.allow_pickle, trust_code=args.allow_code)
    report = _output.report_for_run(model, spec, f"{data.get('model')} (int8, {args.calibration})", args)
    report["provenance"].update(method="quantize", quantize=info)
    return _output.finish_run(
        args, out, "int8", report, f"{PROGRAM_FILE}, pruned.pt, spec.json, {INFO_FILE}, report.json"
    )
