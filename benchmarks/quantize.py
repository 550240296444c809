"""int8 post-training quantization: which PT2E quantizer works, and what to calibrate it on.

    python -m benchmarks.quantize calibration [--models resnet20 cnn] [--threads 2]
    python -m benchmarks.quantize check [--model resnet20]

``calibration``: for each zoo model, the float model is quantized to int8 (PT2E, torchao's
X86InductorQuantizer, strict export; robustprune.quantize) with its activation ranges observed on:
- ``synthetic``: the search's own synthetic probes (256 BN-statistics inversions of the model, the
  disk-cached ``SEARCH_PROBES``; The Knowledge Within's data-free calibration),
- ``gaussian``: 256 Gaussian-noise inputs matched to the input normalisation,
- ``real``: Fashion-MNIST train[:1000] (and train[:256], the same count as the synthetic set), for comparison.
Clean top-1 accuracy on the validation split (train[55000:]) is reported for each, with paired
bootstrap 95% intervals (robustprune.evaluate.stats.compare) of synthetic minus real and synthetic
minus Gaussian. Accuracy does not depend on the machine's load; latency is in benchmarks/latency.py.
Writes results/int8_calibration.md.

``check``: which PT2E int8 quantizer configuration works on a residual model (zoo:resnet20)? For
torchao's X86InductorQuantizer and the XNNPACK quantizer, with strict and non-strict
``torch.export`` (dynamic batch), this annotates (``prepare_pt2e``), calibrates on 2 random inputs,
converts, and reports success or the first line of the error, and the int8 program's relative
output error against the float model. Writes results/quantizer_check.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from benchmarks._common import RESULTS, run_study, subcommand_parser
from robustprune import zoo
from robustprune._io import atomic_write_text
from robustprune._provenance import provenance
from robustprune.data.fashion_mnist import load_eval_split
from robustprune.evaluate.metrics import predict_logits
from robustprune.evaluate.stats import compare
from robustprune.quantize import quantize_int8
from robustprune.quantize.ptq import _export, _quantizer
from robustprune.quantize.run import Int8Model, calibration_inputs

#: (label, calibration source, number of inputs)
SOURCES = (
    ("synthetic", "synthetic", 256),
    ("gaussian", "gaussian", 256),
    ("real", "real", 1000),
    ("real-256", "real", 256),
)


def _correct(model, spec, x, y) -> torch.Tensor:
    return (predict_logits(model, spec, x).argmax(dim=1) == y).float()


def calibration(args, command: str) -> None:
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
    out = args.out or RESULTS / "int8_calibration.md"
    atomic_write_text(Path(out), "\n".join(lines))
    print(f"wrote {out}")


def check_one(model, spec, backend: str, strict: bool) -> str:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    x = spec.normalize(torch.rand(2, *spec.shape, generator=torch.Generator().manual_seed(0)))
    try:
        prepared = prepare_pt2e(_export(model, x, strict=strict).module(), _quantizer(backend))
        prepared(x)
        converted = convert_pt2e(prepared)
        with torch.no_grad():
            want = model(x)
            error = float((converted(x) - want).norm() / want.norm())
        return f"works (relative output error {error:.3f})"
    except Exception as exc:  # the point is to record what each configuration raises
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"fails: {type(exc).__name__}: {first[:160]}"


def check(args, command: str) -> None:
    model, spec = zoo.load(args.model)
    info = provenance()
    import torchao

    lines = [
        f"# PT2E int8 quantizers on zoo:{args.model}",
        "",
        f"Produced by `{command.strip()}` at commit `{info['commit']}` on {info['machine']}; "
        f"torch {info['torch']}, torchao {torchao.__version__}.",
        "",
        "| quantizer | export | result |",
        "|---|---|---|",
    ]
    for backend in ("x86", "xnnpack"):
        for strict in (True, False):
            result = check_one(model, spec, backend, strict)
            lines.append(f"| {backend} | {'strict' if strict else 'non-strict'} | {result} |")
            print(lines[-1], flush=True)
    lines.append("")
    out = args.out or RESULTS / "quantizer_check.md"
    atomic_write_text(Path(out), "\n".join(lines))
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> None:
    parser, sub = subcommand_parser(__doc__)
    c = sub.add_parser("calibration", help="int8 accuracy per calibration source (validation split)")
    c.add_argument("--models", nargs="+", default=["resnet20", "cnn"])
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--seed", type=int, default=0, help="seed of the synthetic probes and the Gaussian inputs")
    k = sub.add_parser("check", help="which PT2E quantizer configuration works on a residual model")
    k.add_argument("--model", default="resnet20")
    k.set_defaults(threads=None)  # torch's own thread count, as before
    for q in (c, k):
        q.add_argument("--out", help="output file; default: under results/")
    run_study("quantize", parser, {"calibration": calibration, "check": check}, argv)


if __name__ == "__main__":
    main()
