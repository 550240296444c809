"""How well does the latency table predict candidates the search would propose? Writes results/lut_check.md.

    python -m benchmarks.lut_check [--models resnet20 mobilenetv2] [--batch 256] [--threads 2]
                                   [--candidates 12] [--runs 30] [--align 1 8 16] [--seed 0]

Per model: the latency table of robustprune.evaluate.lut (measured here, or loaded from the cache), then
``--candidates`` random non-uniform candidates (each group keeps a uniform draw of 25-100% of its channels:
odd widths, as the search's are) and ``--candidates`` with each width rounded up to a multiple of 8
(``--round-to 8``'s shapes). All of them and the original are timed directly, interleaved
(``--runs`` rounds, medians). Reported per candidate: the table's predicted fraction of the original's
latency, the measured fraction and the error (predicted / measured - 1; the issue asks for 10%).

``--align A`` adds a variant of the prediction that reads each layer's table at the width rounded up to a
multiple of A (CPU kernels compute odd widths in whole SIMD blocks, so an odd width costs about what the
next aligned one does); ``1`` is the table as the search uses it. Timings need a quiet machine; the file
states the load average at the start.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import numpy as np

from benchmarks._common import RESULTS, produced_by, start
from robustprune import zoo
from robustprune._io import atomic_write_json, atomic_write_text
from robustprune.evaluate.lut import LatencyModel, build_latency_model
from robustprune.evaluate.speed import compile_for, interleaved_latency, torch_threads
from robustprune.structure import export
from robustprune.structure.space import PruneSpace


def aligned_fraction(model: LatencyModel, counts: list[int], align: int) -> float:
    """The table's fraction with each kept width read at the next multiple of ``align`` (capped at full)."""
    up = [min(size, align * math.ceil(n / align)) for n, size in zip(counts, model.sizes, strict=True)]
    return model.predict_ms(up) / model.predict_ms(list(model.sizes))


def draw_candidates(sizes: list[int], n: int, seed: int, round_to: int = 1) -> list[list[int]]:
    """``n`` random kept widths per group: 25-100% of each group, rounded up to ``round_to``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        counts = []
        for size in sizes:
            kept = int(rng.integers(max(1, math.ceil(0.25 * size)), size + 1))
            counts.append(min(size, round_to * math.ceil(kept / round_to)))
        out.append(counts)
    return out


def _candidate(space: PruneSpace, counts: list[int]) -> dict:
    """The first ``n`` channels of each group (only widths matter for speed; blocks keep their structure)."""
    from robustprune.evaluate.lut import _first

    return {g.name: _first(g.size, n, g.blocks) for g, n in zip(space.groups, counts, strict=True)}


def check_model(name: str, batch: int, threads: int, n: int, runs: int, aligns: list[int], seed: int) -> dict:
    model, spec = zoo.load(name)
    space = PruneSpace(model, spec)
    sizes = [g.size for g in space.groups]
    with torch_threads(threads):
        table = build_latency_model(space, batch_size=batch, threads=threads, quiet=False)
        drawn = {"odd": draw_candidates(sizes, n, seed), "r8": draw_candidates(sizes, n, seed + 1, round_to=8)}
        runners = {"original": compile_for(model, spec, batch)}
        for kind, candidates in drawn.items():
            for i, counts in enumerate(candidates):
                runners[f"{kind}{i}"] = compile_for(export(space, _candidate(space, counts)), spec, batch)
        stats = interleaved_latency(runners, runs=runs, warmup=3)
    full = stats["original"].median_ms
    rows = []
    for kind, candidates in drawn.items():
        for i, counts in enumerate(candidates):
            measured = stats[f"{kind}{i}"].median_ms / full
            predicted = {str(a): aligned_fraction(table, counts, a) for a in aligns}
            rows.append({"kind": kind, "counts": counts, "measured": measured, "predicted": predicted})
    return {"model": name, "batch": batch, "threads": threads, "runs": runs, "original_ms": full, "rows": rows}


def width_sweep(name: str, batch: int, threads: int, runs: int) -> dict:
    """The widest 3x3 conv of the model (in and out pruned together) timed alone at every width from half to
    full: how latency steps with odd widths (the shapes the latency table interpolates between)."""
    from robustprune.evaluate.lut import _input_shapes, _layer_at, _time_ms

    model, spec = zoo.load(name)
    space = PruneSpace(model, spec)
    modules = dict(space.model.named_modules())
    shapes = _input_shapes(space)
    convs = [
        layer
        for layer in space._layers
        if layer.kind != "norm"
        and layer.in_group is not None
        and layer.out_group is not None
        and not layer.depthwise
        and getattr(modules[layer.name], "kernel_size", None) == (3, 3)
    ]
    if not convs:
        return {}
    layer = max(convs, key=lambda item: (item.in_full == item.out_full, item.out_full))  # square: w -> w
    full = min(layer.in_full, layer.out_full)
    times = {}
    with torch_threads(threads):
        for width in range(max(1, full // 2), full + 1):
            module, shape = _layer_at(modules[layer.name], shapes[layer.name], width, width, 1, False)
            times[width] = _time_ms(module, shape, batch, "cpu", runs)
    return {"layer": layer.name, "input": list(shapes[layer.name]), "ms": times}


def _summary(cell: dict, aligns: list[int]) -> list[str]:
    lines = []
    for kind in ("odd", "r8"):
        rows = [r for r in cell["rows"] if r["kind"] == kind]
        for a in aligns:
            errors = np.array([r["predicted"][str(a)] / r["measured"] - 1 for r in rows])
            lines.append(
                f"| {cell['model']} | {cell['batch']} | {cell['threads']} | {kind} | {a} | {len(rows)} | "
                f"{100 * errors.mean():+.1f}% | {100 * np.abs(errors).mean():.1f}% | "
                f"{100 * np.abs(errors).max():.1f}% | "
                f"{int((np.abs(errors) <= 0.10).sum())} of {len(rows)} |"
            )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "mobilenetv2"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=12)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--align", nargs="+", type=int, default=[1, 8, 16])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "lut_check.md"))
    args = parser.parse_args(argv)
    command = start("lut_check", argv)
    if any(a < 1 for a in args.align) or args.candidates < 1 or args.runs < 1:
        parser.error("--align, --candidates and --runs must be >= 1")
    out = Path(args.out)
    cells_dir = out.parent / out.stem / "cells"
    load = os.getloadavg()[0]
    for name in args.models:
        path = cells_dir / f"{name}__b{args.batch}__t{args.threads}.json"
        if path.is_file():
            print(f"{name}: done earlier")
            continue
        cell = check_model(name, args.batch, args.threads, args.candidates, args.runs, args.align, args.seed)
        cell["sweep"] = width_sweep(name, args.batch, args.threads, args.runs)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {**cell, "load_average": os.getloadavg()[0]})
        print(f"{name}: {len(cell['rows'])} candidates timed")
    cells = [json.loads(p.read_text()) for p in sorted(cells_dir.glob("*.json"))]
    lines = [
        "# The latency table against direct timing",
        "",
        produced_by(command, seed=args.seed) + f"; load average {load:.2f} at the start.",
        "",
        "Random candidates (odd: each group keeps 25-100% of its channels; r8: the same rounded up to multiples "
        "of 8), each timed directly against the original (interleaved medians) and predicted by the latency "
        "table. Error = predicted / measured - 1. align: the table read at widths rounded up to that multiple "
        "(1: the table as the search uses it).",
        "",
        "| model | batch | threads | candidates | align | n | mean error | mean abs error | max abs error "
        "| within 10% |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in cells:
        lines += _summary(cell, args.align)
    for cell in cells:
        sweep = cell.get("sweep")
        if not sweep:
            continue
        ms = {int(w): t for w, t in sweep["ms"].items()}
        widest = max(ms)
        lines += [
            "",
            f"{cell['model']}: `{sweep['layer']}` alone (3x3, input {sweep['input']} at full width, in = out = w), "
            f"batch {cell['batch']}, {cell['threads']} threads, median of {cell['runs']} runs; MACs scale as w^2:",
            "",
            "| w | ms | ms / ms at full | MACs / MACs at full |",
            "|---|---|---|---|",
            *(f"| {w} | {t:.3f} | {t / ms[widest]:.2f} | {(w / widest) ** 2:.2f} |" for w, t in sorted(ms.items())),
        ]
    lines += ["", "Per candidate (measured fraction; predicted at each align):", ""]
    for cell in cells:
        lines.append(f"- {cell['model']} (original {cell['original_ms']:.2f} ms, load {cell['load_average']:.2f}):")
        for r in cell["rows"]:
            preds = ", ".join(f"{a}: {100 * v:.1f}%" for a, v in r["predicted"].items())
            lines.append(f"  - {r['kind']} measured {100 * r['measured']:.1f}%; predicted {preds}")
    atomic_write_text(out, "\n".join(lines) + "\n")
    print("\n".join(lines[: 14 + 2 * len(cells) * len(args.align)]))


if __name__ == "__main__":
    main()
