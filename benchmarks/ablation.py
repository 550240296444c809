"""Issue 15's ablation: does the Optuna allocation earn its keep? Writes results/ablation[_val].md.

    python -m benchmarks.ablation --split val      # the decision run: robustprune/suites/ablation_val.json
    python -m benchmarks.ablation --split test     # the claim, once, after the decision (results/PROTOCOL.md)
    python -m benchmarks.ablation --split val --summarize-only   # the table from the finished cells
    python -m benchmarks.ablation --split val --seeds 1 --models mlp cnn   # a second runner on other cells

Runs the suite's missing cells through the bench runner into results/ablation[_val]/ (resumable:
finished cells are kept in cells/ and a rerun skips them), then writes the table: per (model,
target, method) the mean and 95% t-interval over seeds of clean, PGD and APGD accuracy on fixed
images, corruption accuracy and OOD AUROC, kept MACs/params; and, per (model, target), the paired
comparison of ``search`` against ``progressive_uniform``, ``oneshot_search``, ``search_random`` and
the best one-shot baseline (by mean clean accuracy): accuracy difference with a bootstrap interval
over seeds and images, the verdict (win / tie / loss) and the per-seed differences.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import defaultdict

import numpy as np

from benchmarks._common import RESULTS, start
from robustprune._io import atomic_write_text
from robustprune._provenance import provenance
from robustprune.bench import Suite, load_suite, run_suite
from robustprune.evaluate.paired import unpack
from robustprune.evaluate.stats import compare, mean_ci
from robustprune.search import SEARCH_VARIANTS

METRICS = ("clean", "pgd", "apgd")
RIVALS = ("progressive_uniform", "oneshot_search", "search_random")


def _per_image(rows: list[dict], metric: str) -> np.ndarray | None:
    """(seeds, images) correctness of one method's cells, rows sorted by seed; None if a cell lacks it."""
    vectors = [row.get("per_image", {}).get(metric) for row in sorted(rows, key=lambda r: r["seed"])]
    if not vectors or any(v is None for v in vectors):
        return None
    return np.stack([unpack(v).numpy() for v in vectors]).astype(float)


def _cell_line(method: str, rows: list[dict]) -> str:
    def stat(values) -> str:
        mean, half = mean_ci([100 * v for v in values])
        return f"{mean:.2f} ± {half:.2f}"

    parts = [method, f"{100 * np.mean([r['kept_macs'] for r in rows]):.1f}"]
    for metric in METRICS:
        correct = _per_image(rows, metric)
        parts.append(stat(correct.mean(axis=1)) if correct is not None else "-")
    report = [r["report"] for r in rows]
    parts.append(stat([r["corruption_accuracy"] for r in report]))
    for name in ("digits", "flipped", "noise"):
        parts.append(stat([r["ood_auroc"][name] for r in report]))
    return "| " + " | ".join(parts) + " |"


def _best_baseline(by_method: dict[str, list[dict]]) -> str | None:
    baselines = [m for m in by_method if m not in SEARCH_VARIANTS]
    if not baselines:
        return None
    return max(baselines, key=lambda m: np.mean([r["report"]["clean_accuracy"] for r in by_method[m]]))


def comparisons(by_method: dict[str, list[dict]], n_resamples: int = 10_000) -> list[str]:
    """Table rows: search against each rival on each metric, paired over seeds and images."""
    if "search" not in by_method:
        return []
    best = _best_baseline(by_method)
    rivals = [m for m in RIVALS if m in by_method] + ([best] if best else [])
    lines = []
    for rival in rivals:
        label = f"best baseline ({rival})" if rival == best else rival
        # paired on the seeds both have finished (a partial run may have more seeds of one method)
        shared = {r["seed"] for r in by_method["search"]} & {r["seed"] for r in by_method[rival]}
        mine = [r for r in by_method["search"] if r["seed"] in shared]
        theirs = [r for r in by_method[rival] if r["seed"] in shared]
        if len(shared) < max(len(by_method["search"]), len(by_method[rival])):
            label += f" (seeds {', '.join(map(str, sorted(shared)))} only)"
        cells = []
        for metric in METRICS:
            a, b = _per_image(mine, metric), _per_image(theirs, metric)
            if a is None or b is None or a.shape != b.shape:
                cells.append("-")
                continue
            result = compare(a, b, n_resamples=n_resamples)
            cells.append(result.describe())
        lines.append(f"| search vs {label} | " + " | ".join(cells) + " |")
    return lines


def ablation_markdown(rows: list[dict], suite_name: str, n_resamples: int = 10_000) -> str:
    """The whole results file's tables from the finished cells."""
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        groups[(row["model"], row["target"])][row["method"]].append(row)
    out = []
    for (model, target), by_method in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        kind = next(iter(by_method.values()))[0]["target_kind"]
        out += [f"## {model} at {target:g} of {kind}", ""]
        out += [
            "| method | kept MACs % | clean | PGD | APGD | corruption | AUROC digits | AUROC flipped | AUROC noise |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        out += [_cell_line(method, by_method[method]) for method in sorted(by_method)]
        verdicts = comparisons(by_method, n_resamples=n_resamples)
        if verdicts:
            out += [
                "",
                "Paired differences, points (A - B) [95% bootstrap interval over seeds and images], verdict:",
                "",
                "| comparison | clean | PGD | APGD |",
                "|---|---|---|---|",
                *verdicts,
            ]
        out.append("")
    head = [
        f"# Ablation: suite {suite_name}",
        "",
        "Accuracies in %, mean ± 95% t-interval over seeds, on the same images for every method and seed "
        "(results/PROTOCOL.md). A comparison is a win or a loss only where its interval excludes zero.",
        "",
    ]
    return "\n".join(head + out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("val", "test"), required=True)
    parser.add_argument("--summarize-only", action="store_true", help="only write the table from finished cells")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--models", nargs="+", help="run only these models' cells (a second runner, another machine)")
    parser.add_argument("--seeds", nargs="+", type=int, help="run only these seeds' cells")
    parser.add_argument("--targets", nargs="+", type=float, help="run only these targets' cells")
    args = parser.parse_args(argv)
    command = start("ablation", argv)
    name = "ablation_val" if args.split == "val" else "ablation"
    suite = load_suite(name)
    out = RESULTS / name
    if not args.summarize_only:
        part = part_of(suite, args.models, args.seeds, args.targets)
        run_suite(part, out, workers=args.workers, threads=args.threads)
    rows = [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]
    if not rows:
        sys.exit(f"no finished cells in {out}/cells")
    prov = provenance()
    text = ablation_markdown(rows, name)
    text += (
        f"\n{len(rows)} of {len(suite.cells())} cells finished. Table written by `{command}` at commit "
        f"{prov['commit']} on {prov['machine']}, torch {prov['torch']}; each cell's JSON in {out.name}/cells "
        "holds its own provenance (the commit and machine it ran on).\n"
    )
    atomic_write_text(RESULTS / f"{name}.md", text)
    print(text)


def part_of(suite: Suite, models=None, seeds=None, targets=None) -> Suite:
    """The suite restricted to some models, seeds or targets: runners on disjoint parts share one cells folder
    (a one-worker runner skips a cell another finished meanwhile); the table is written from every finished cell."""
    for label, asked, known in (
        ("model", models, suite.models),
        ("seed", seeds, suite.seeds),
        ("target", targets, suite.targets),
    ):
        unknown = sorted(set(asked or ()) - set(known))
        if unknown:
            raise SystemExit(f"suite {suite.name} has no {label} {', '.join(map(str, unknown))}")
    return dataclasses.replace(
        suite,
        models={m: kind for m, kind in suite.models.items() if not models or m in models},
        seeds=[s for s in suite.seeds if not seeds or s in seeds],
        targets=[t for t in suite.targets if not targets or t in targets],
    )


if __name__ == "__main__":
    main()
