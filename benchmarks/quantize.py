"""int8 post-training quantization: which PT2E quantizer works, and what to calibrate it on.

    python -m benchmarks.quantize calibration [--models resnet20 cnn RUN_FOLDER ...] [--sources ...] [--threads 2]
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
Each (model, calibration) is a cell under results/int8_calibration/cells that a rerun skips; a run
folder in ``--models`` is a pruned model (its synthetic inputs inverted from the original, as
``robustprune quantize`` does). Writes results/int8_calibration.md.

``check``: which PT2E int8 quantizer configuration works on a residual model (zoo:resnet20)? For
torchao's X86InductorQuantizer and the XNNPACK quantizer, with strict and non-strict
``torch.export`` (dynamic batch), this annotates (``prepare_pt2e``), calibrates on 2 random inputs,
converts, and reports success or the first line of the error, and the int8 program's relative
output error against the float model. Writes results/quantizer_check.md.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from benchmarks._common import RESULTS, run_study, subcommand_parser
from robustprune import zoo
from robustprune._io import atomic_write_json, atomic_write_text
from robustprune._provenance import provenance, short_commit
from robustprune.data.fashion_mnist import load_eval_split
from robustprune.evaluate.metrics import predict_logits
from robustprune.evaluate.paired import pack, unpack
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


def _load(name: str):
    """(label, float model to quantize, original model, spec) for a zoo name or a pruned run folder; the
    label ends with a hash of the weights file, so two folders of one name never share cells."""
    if Path(name, "spec.json").is_file():
        from robustprune.structure import load_pruned

        pruned, spec, data = load_pruned(name)
        original, _ = zoo.load(data["model"].removeprefix("zoo:"))
        return f"{Path(name).name}@{_digest(Path(name, 'pruned.pt'))}", pruned, original, spec
    model, spec = zoo.load(name)
    return f"{name}@{_digest(zoo.checkpoint_path(name))}", model, model, spec


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


def _cell(cells: Path, label: str, source: str, n: int, model, original, spec, x_val, y_val, seed: int) -> dict:
    """One (model, calibration) accuracy on the validation split, saved with its per-image correctness."""
    path = cells / f"{label.replace('@', '__')}__{source}-{n}__s{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    start = time.time()
    if source == "fp32":
        correct = _correct(model, spec, x_val, y_val)
    else:
        # synthetic inputs are inverted from the original model, as `robustprune quantize` does
        pixels = calibration_inputs(source, original, spec, n=n, seed=seed, progress=print)
        program = quantize_int8(model, spec, pixels)
        correct = _correct(Int8Model(program.module(), model), spec, x_val, y_val)
    cell = {"model": label, "source": source, "n": n, "seconds": time.time() - start, "correct": pack(correct)}
    cell["provenance"] = provenance(seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, cell)
    return cell


def calibration(args, command: str) -> None:
    x_val, y_val = load_eval_split("val")
    cells = Path(args.cells) if args.cells else RESULTS / "int8_calibration" / "cells"
    sources = [s for s in SOURCES if s[0] in args.sources]
    rows, comparisons = [], []
    for name in args.models:
        label, model, original, spec = _load(name)
        fp32 = _cell(cells, label, "fp32", 0, model, original, spec, x_val, y_val, args.seed)
        rows.append((label, "fp32 (no quantization)", "-", fp32, None))
        correct = {}
        for key, source, n in sources:
            cell = _cell(cells, label, source, n, model, original, spec, x_val, y_val, args.seed)
            correct[key] = unpack(cell["correct"]).float()
            rows.append((label, key, str(n), cell, cell["seconds"]))
            print(f"{label} {key}: {100 * float(correct[key].mean()):.2f}% ({cell['seconds']:.0f}s)", flush=True)
        for other in ("real", "real-256", "gaussian"):
            if "synthetic" in correct and other in correct:
                comparisons.append((label, other, compare(correct["synthetic"].numpy(), correct[other].numpy())))
    commits = sorted({short_commit(row[3]["provenance"]["commit"]) for row in rows})
    threads = sorted({row[3]["provenance"]["threads"] for row in rows})
    folders = any("__" in label.split("@")[0] for label, *_ in rows)
    info = provenance(seed=args.seed)
    lines = [
        "# int8 calibration: synthetic vs Gaussian vs real inputs (validation split)",
        "",
        f"Produced by `{command.strip()}` at commit `{info['commit']}` on {info['machine']}; torch {info['torch']}, "
        f"seed {args.seed}; cells (results/int8_calibration/cells, each with its own provenance) measured at "
        f"{', '.join(commits)} with {'/'.join(map(str, threads))} torch threads. PT2E int8 (torchao "
        "X86InductorQuantizer, per-channel symmetric weights, per-tensor affine activations; strict "
        "torch.export with a dynamic batch), "
        f"clean top-1 on the validation split ({len(y_val):,} images, train[55000:]). A model is named with a "
        "hash of its weights file after the @."
        + (
            " A run-folder name is a pruned model (the validation ablation's); its synthetic inputs are inverted "
            "from the original model, as `robustprune quantize` does."
            if folders
            else ""
        ),
        "",
        "| model | calibration | inputs | clean top-1 (%) | quantize time (s) |",
        "|---|---|---|---|---|",
    ]
    for label, key, n, cell, seconds in rows:
        acc = 100 * float(unpack(cell["correct"]).float().mean())
        lines.append(f"| {label} | {key} | {n} | {acc:.2f} | {'' if seconds is None else f'{seconds:.0f}'} |")
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
    c.add_argument("--models", nargs="+", default=["resnet20", "cnn"], help="zoo names or pruned run folders")
    c.add_argument("--sources", nargs="+", default=[s[0] for s in SOURCES], choices=[s[0] for s in SOURCES])
    c.add_argument("--cells", help="cell folder (default results/int8_calibration/cells); a rerun skips finished cells")
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
