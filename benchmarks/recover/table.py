"""results/recover[_val].md from the recovery cells (cells.py): before -> after per recipe, paired intervals."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from robustprune.evaluate.paired import unpack
from robustprune.evaluate.stats import compare, mean_ci

METRICS = ("clean", "pgd")
CHAIN = ("kd", "kd+feat", "kd+feat+sp", "kd+feat+sp+op", "full")  # each recipe adds one thing to the previous


def _label(row: dict) -> str:
    if row["stage"] != "after":
        return row["stage"]
    return row["recipe"] + (f" ({row['budget']})" if row.get("budget") else "")


def _per_image(rows: list[dict], metric: str) -> np.ndarray:
    """(seeds, images) 0/1 correctness, rows sorted by seed."""
    return np.stack([unpack(r["per_image"][metric]).numpy() for r in rows]).astype(float)


def _stat(values) -> str:
    mean, half = mean_ci([100 * v for v in values])
    return f"{mean:.2f} ± {half:.2f}" if len(values) > 1 else f"{mean:.2f}"


def _row_line(label: str, rows: list[dict]) -> str:
    reports = [r["report"] for r in rows]
    parts = [label, str(len(rows))]
    parts += [_stat(_per_image(rows, m).mean(axis=1)) for m in METRICS]
    parts.append(_stat([r["corruption_accuracy"] for r in reports]))
    parts += [_stat([r["ood_auroc"][name] for r in reports]) for name in ("digits", "flipped", "noise")]
    seconds = [r["recover"]["seconds"] + r["recover"].get("pool_seconds", 0.0) for r in rows if "recover" in r]
    cpu = [r["recover"]["cpu_seconds"] for r in rows if "cpu_seconds" in r.get("recover", {})]
    parts.append(f"{np.mean(seconds):.0f}" if seconds else "-")
    parts.append(f"{np.mean(cpu):.0f}" if cpu else "-")
    return "| " + " | ".join(parts) + " |"


def _compare_line(name: str, a: list[dict], b: list[dict], n_resamples: int) -> str:
    cells = []
    for metric in METRICS:
        x, y = _per_image(a, metric), _per_image(b, metric)
        cells.append(compare(x, y, n_resamples=n_resamples).describe() if x.shape == y.shape else "-")
    return f"| {name} | " + " | ".join(cells) + " |"


def recover_markdown(rows: list[dict], split: str, n_resamples: int = 10_000) -> str:
    """Per (model, target): one row per stage / recipe, then paired differences against the start and the chain."""
    originals = {r["model"]: r for r in rows if r["stage"] == "original"}
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["stage"] != "original":
            groups[(row["model"], row["target"], row.get("start_method", "search"))][_label(row)].append(row)
    out = [
        f"# Data-free recovery after the default search ({split} split)",
        "",
        "Accuracies in %, on the same images for every cell (evaluation seed 0): clean on the whole split, "
        "PGD-10 at eps 0.01 on 1000 fixed images, corruption accuracy (8 corruptions x 5 severities, 1000 "
        "images), OOD AUROC (max softmax) against digits, flipped images and uniform noise. Mean ± 95% "
        "t-interval over seeds where there are several. `wall s`: recovery wall time, the pool's synthesis "
        "included, on the cell's threads of a shared, contended 2-core CPU (each cell's provenance has its "
        "threads and load average); `CPU s`: the CPU time the recovery used (training, and the pool's synthesis "
        "in the cell that made it), a steadier measure on a contended machine.",
        "",
    ]
    for (model, target, start), by_label in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1], kv[0][2])):
        seeds = sorted({r["seed"] for rs in by_label.values() for r in rs})
        origin = "the default search" if start == "search" else f"`{start}` (a one-shot stand-in for the search)"
        out += [f"## {model} at {target:g} of the cost, from {origin} (seeds {', '.join(map(str, seeds))})", ""]
        out += [
            "| model | seeds | clean | PGD | corruption | AUROC digits | AUROC flipped | AUROC noise "
            "| wall s | CPU s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        if model in originals:
            out.append(_row_line("original", [originals[model]]))
        order = sorted(by_label, key=lambda k: (k != "before", k.split(" ")[0] not in CHAIN, _chain_index(k), k))
        for label in order:
            out.append(_row_line(label, sorted(by_label[label], key=lambda r: r["seed"])))
        lines = _comparisons(model, by_label, originals, n_resamples)
        if lines:
            out += [
                "",
                "Paired differences, points (A - B) [95% bootstrap interval over seeds and images], verdict, "
                "per-seed differences:",
                "",
                "| comparison | clean | PGD |",
                "|---|---|---|",
                *lines,
            ]
        out.append("")
    return "\n".join(out)


def _chain_index(label: str) -> int:
    name = label.split(" ")[0]
    return CHAIN.index(name) if name in CHAIN else len(CHAIN)


def _comparisons(model: str, by_label: dict[str, list[dict]], originals: dict, n_resamples: int) -> list[str]:
    before = sorted(by_label.get("before", []), key=lambda r: r["seed"])
    lines = []
    for label, rows in sorted(by_label.items(), key=lambda kv: (_chain_index(kv[0]), kv[0])):
        if label == "before":
            continue
        rows = sorted(rows, key=lambda r: r["seed"])
        seeds = [r["seed"] for r in rows]
        base = [r for r in before if r["seed"] in seeds]
        if len(base) == len(rows):
            lines.append(_compare_line(f"{label} vs before", rows, base, n_resamples))
        name, _, budget = label.partition(" ")
        if name in CHAIN and CHAIN.index(name) > 0:
            previous = (CHAIN[CHAIN.index(name) - 1] + (" " + budget if budget else "")).strip()
            prev_rows = sorted((r for r in by_label.get(previous, []) if r["seed"] in seeds), key=lambda r: r["seed"])
            if len(prev_rows) == len(rows):
                lines.append(_compare_line(f"{label} vs {previous}", rows, prev_rows, n_resamples))
        if not budget:  # the default budget against every smaller one of the same recipe
            for other, other_rows in sorted(by_label.items()):
                if other.startswith(name + " ("):
                    other_rows = sorted((r for r in other_rows if r["seed"] in seeds), key=lambda r: r["seed"])
                    if len(other_rows) == len(rows):
                        lines.append(_compare_line(f"{label} vs {other}", rows, other_rows, n_resamples))
        if model in originals:
            lines.append(_compare_line(f"{label} vs original", rows, [originals[model]] * len(rows), n_resamples))
    return lines
