"""int8 post-training quantization calibrated on synthetic inputs vs Gaussian noise vs real images.

    python -m benchmarks.int8_calibration [--models resnet20 cnn] [--threads 2]

For each zoo model, the float model is quantized to int8 (PT2E, torchao's X86InductorQuantizer,
strict export; robustprune.quantize) with its activation ranges observed on:
- ``synthetic``: the search's own synthetic probes (256 BN-statistics inversions of the model, the
  disk-cached ``SEARCH_PROBES``; The Knowledge Within's data-free calibration),
- ``gaussian``: 256 Gaussian-noise inputs matched to the input normalisation,
- ``real``: Fashion-MNIST train[:1000] (and train[:256], the same count as the synthetic set), for comparison.
Clean top-1 accuracy on the validation split (train[55000:]) is reported for each, with paired
bootstrap 95% intervals (robustprune.evaluate.stats.compare) of synthetic minus real and synthetic
minus Gaussian. Accuracy does not depend on the machine's load; latency is in benchmarks/latency.py.
Writes results/int8_calibration.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from robustprune import zoo
from robustprune._io import atomic_write_text
from robustprune._provenance import provenance
from robustprune.data.fashion_mnist import load_eval_split
from robustprune.evaluate.metrics import predict_logits
from robustprune.evaluate.stats import compare
from robustprune.quantize import quantize_int8
from robustprune.quantize.run import Int8Model, calibration_inputs

RESULTS = Path(__file__).resolve().parent.parent / "results"
#: (label, calibration source, number of inputs)
SOURCES = (
    ("synthetic", "synthetic", 256),
    ("gaussian", "gaussian", 256),
    ("real", "real", 1000),
    ("real-256", "real", 256),
)


def _correct(model, spec, x, y) -> torch.Tensor:
    return (predict_logits(model, spec, x).argmax(dim=1) == y).float()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet20", "cnn"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic probes and the Gaussian inputs")
    parser.add_argument("--out", default=str(RESULTS / "int8_calibration.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python -m benchmarks.int8_calibration " + " ".join(sys.argv[1:] if argv is None else argv)
    x_val, y_val = load_eval_split("val")
    rows, comparisons = [], []
    for name in args.models:
        model, spec = zoo.load(name)
        float_correct = _correct(model, spec, x_val, y_val)
        rows.append((name, "fp32 (no quantization)", "-", 100 * float(float_correct.mean()), None))
        correct = {}
        for label, source, n in SOURCES:
            start = time.time()
            pixels = calibration_inputs(source, model, spec, n=n, seed=args.seed, progress=print)
            program = quantize_int8(model, spec, pixels)
            correct[label] = _correct(Int8Model(program.module(), model), spec, x_val, y_val)
            seconds = time.time() - start
            rows.append((name, label, str(len(pixels)), 100 * float(correct[label].mean()), seconds))
            print(f"{name} {label}: {100 * float(correct[label].mean()):.2f}% ({seconds:.0f}s)", flush=True)
        for other in ("real", "real-256", "gaussian"):
            comparisons.append((name, other, compare(correct["synthetic"].numpy(), correct[other].numpy())))
    info = provenance(seed=args.seed)
    lines = [
        "# int8 calibration: synthetic vs Gaussian vs real inputs (validation split)",
        "",
        f"Produced by `{command.strip()}` at commit `{info['commit']}` on {info['machine']}; torch {info['torch']}, "
        f"{args.threads} threads, seed {args.seed}. PT2E int8 (torchao X86InductorQuantizer, per-channel "
        "symmetric weights, per-tensor affine activations; strict torch.export with a dynamic batch), "
        f"clean top-1 on the validation split ({len(y_val):,} images, train[55000:]).",
        "",
        "| model | calibration | inputs | clean top-1 (%) | quantize time (s) |",
        "|---|---|---|---|---|",
    ]
    for name, label, n, acc, seconds in rows:
        lines.append(f"| {name} | {label} | {n} | {acc:.2f} | {'' if seconds is None else f'{seconds:.0f}'} |")
    lines += [
        "",
        "Paired differences, synthetic minus the other calibration, in accuracy points "
        "(paired bootstrap 95% interval over the validation images; 'win' = interval above zero):",
        "",
        "| model | synthetic vs | difference [95% CI] |",
        "|---|---|---|",
    ]
    for name, other, comp in comparisons:
        lines.append(
            f"| {name} | {other} | {comp.difference:+.2f} [{comp.low:+.2f}, {comp.high:+.2f}] {comp.verdict} |"
        )
    lines.append("")
    atomic_write_text(Path(args.out), "\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
