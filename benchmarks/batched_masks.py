"""Speed of scoring K candidates with batched masks (one pass) against K separate masked passes.

    python benchmarks/batched_masks.py [--threads 2]

Writes results/batched_masks.md. Times are medians of repeated runs in the same
process; the ratio is what matters, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

import torch

from robustprune import zoo
from robustprune._io import atomic_write_text
from robustprune._provenance import provenance
from robustprune.structure import PruneSpace, batched_masks, masked

RESULTS = Path(__file__).resolve().parent.parent / "results"


def random_candidate(space: PruneSpace, ratio: float, gen: torch.Generator) -> dict:
    return {
        g.name: sorted(torch.randperm(g.size, generator=gen)[: max(1, round(g.size * (1 - ratio)))].tolist())
        for g in space.groups
    }


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def separate(model, space, candidates, x) -> None:
    for c in candidates:
        with masked(space, c):
            model(x)


@torch.no_grad()
def batched(model, space, candidates, big) -> None:
    with batched_masks(space, candidates):
        model(big)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/batched_masks.py " + " ".join(sys.argv[1:] if argv is None else argv)
    rows = []
    for name in ("cnn", "resnet20", "mobilenetv2"):
        model, spec = zoo.load(name)
        space = PruneSpace(model, spec)
        gen = torch.Generator().manual_seed(0)
        for k, block in ((8, 64), (32, 16)):
            candidates = [random_candidate(space, 0.3, gen) for _ in range(k)]
            x = torch.rand(block, *spec.shape, generator=gen)
            big = x.repeat(k, 1, 1, 1)

            t_sep = median_seconds(functools.partial(separate, model, space, candidates, x), args.repeats)
            t_bat = median_seconds(functools.partial(batched, model, space, candidates, big), args.repeats)
            rows.append((name, k, block, t_sep, t_bat))
            print(
                f"{name} K={k} block={block}: separate {t_sep * 1e3:.1f} ms, batched {t_bat * 1e3:.1f} ms",
                file=sys.stderr,
            )
    prov = provenance()
    lines = [
        "# Batched candidate masks",
        "",
        f"Produced by `{command.strip()}` at commit `{prov['commit']}` on {prov['machine']} "
        f"(torch {prov['torch']}). Median of {args.repeats} runs.",
        "",
        "K candidates (30% of each group's channels removed at random), each scored on the same block of inputs: "
        "K separate masked forward passes versus one pass over a batch of K blocks with per-block masks.",
        "",
        "| model | K | block | K separate passes (ms) | one batched pass (ms) | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for name, k, block, t_sep, t_bat in rows:
        lines.append(f"| {name} | {k} | {block} | {t_sep * 1e3:.1f} | {t_bat * 1e3:.1f} | {t_sep / t_bat:.2f}x |")
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "batched_masks.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
