"""The summary files of a benchmark suite: results.csv, results.json, summary.md and plots per model."""

from __future__ import annotations

import csv
import dataclasses
import io
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from robustprune._io import atomic_write_json, atomic_write_text
from robustprune._provenance import provenance, short_commit
from robustprune.plots import plot_methods

if TYPE_CHECKING:
    from robustprune.bench import Suite


def cell_sources(rows: list[dict]) -> list[str]:
    """One Markdown bullet per (commit, machine, evaluation device, torch, where pruned) with its cell count."""
    counts: dict[tuple, int] = {}
    for r in rows:
        prov = r["report"]["provenance"]
        origin = r.get("pruned_in")
        pruned = f"; pruned earlier at `{(origin['commit'] or 'unknown')[:7]}` on {origin['machine']}" if origin else ""
        key = (short_commit(prov["commit"]), prov["machine"], prov.get("device", "cpu"), prov["torch"], pruned)
        counts[key] = counts.get(key, 0) + 1
    return [
        f"- {n} cells: commit `{commit}`, {machine}, evaluation on {device}, torch {torch_version}{pruned}"
        for (commit, machine, device, torch_version, pruned), n in sorted(counts.items())
    ]


def flat_row(row: dict) -> dict:
    r = row["report"]
    flat = {
        k: row[k]
        for k in ("model", "method", "target_kind", "target", "seed", "kept_macs", "kept_params", "prune_seconds")
    }
    flat.update(
        clean_accuracy=r["clean_accuracy"],
        fgsm=r["robust_accuracy"]["fgsm"],
        pgd=r["robust_accuracy"]["pgd"],
        corruption_accuracy=r["corruption_accuracy"],
        ece=r["ece"],
        macs=r["macs"],
        params=r["params"],
        **{f"auroc_{k}": v for k, v in r["ood_auroc"].items()},
        trials_per_step=row.get("trials_per_step"),
        commit=r["provenance"]["commit"],
        torch=r["provenance"]["torch"],
        threads=r["provenance"]["threads"],
    )
    return flat


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def summary_table(suite: Suite, rows: list[dict], originals: dict) -> str:
    flats = [flat_row(r) for r in rows]
    metrics = [
        ("clean_accuracy", "clean acc"),
        ("pgd", "PGD acc"),
        ("fgsm", "FGSM acc"),
        ("corruption_accuracy", "corruption acc"),
        ("auroc_digits", "AUROC digits"),
        ("auroc_flipped", "AUROC flipped"),
        ("auroc_noise", "AUROC noise"),
    ]
    head = "| model | target | method | kept MACs | " + " | ".join(m[1] for m in metrics) + " | prune time (s) |"
    lines = [head, "|" + "---|" * (len(metrics) + 5)]
    for model in suite.models:
        o = originals[model]
        lines.append(
            f"| {model} | original | - | 100 | {100 * o['clean_accuracy']:.2f} | "
            f"{100 * o['robust_accuracy']['pgd']:.2f} | {100 * o['robust_accuracy']['fgsm']:.2f} | "
            f"{100 * o['corruption_accuracy']:.2f} | "
            + " | ".join(f"{100 * o['ood_auroc'][k]:.2f}" for k in ("digits", "flipped", "noise"))
            + " | - |"
        )
        for target in suite.targets:
            for method in suite.methods:
                sel = [f for f in flats if f["model"] == model and f["target"] == target and f["method"] == method]
                if not sel:
                    continue
                cells = [_mean_std([f[key] for f in sel]) for key, _ in metrics]
                kind = suite.models[model]
                lines.append(
                    f"| {model} | {kind} <= {target:g} | {method} | {_mean_std([f['kept_macs'] for f in sel])} | "
                    + " | ".join(cells)
                    + f" | {statistics.mean(f['prune_seconds'] for f in sel):.0f} |"
                )
    return "\n".join(lines)


def write_outputs(suite: Suite, rows: list[dict], originals: dict, out: Path, complete: bool = True) -> None:
    flats = [flat_row(r) for r in rows]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(flats[0]))
    writer.writeheader()
    writer.writerows(flats)
    atomic_write_text(out / "results.csv", buffer.getvalue())
    prov = provenance()
    atomic_write_json(
        out / "results.json",
        {"suite": dataclasses.asdict(suite), "provenance": prov, "rows": rows, "originals": originals},
    )
    seeds = ", ".join(map(str, suite.seeds))
    text = [
        f"# Benchmark suite `{suite.name}`",
        "",
        suite.description,
        "",
        f"Produced by `robustprune bench --suite {suite.name} --out {out}`, seeds {seeds}. Values are "
        "percentages, mean ± standard deviation over seeds; kept MACs as a percentage of the original. "
        "Real-data metrics on the suite's evaluation split (settings in results.json). The cells were computed "
        "by (each cell's JSON holds its full provenance):",
        "",
        *cell_sources(rows),
        "",
        summary_table(suite, rows, originals),
        "",
    ]
    if not complete:
        text[4:4] = [f"**Partial**: {len(rows)} of {len(suite.cells())} cells finished; rerun to complete.", ""]
    atomic_write_text(out / "summary.md", "\n".join(text))
    for model in suite.models:
        sel = [f for f in flats if f["model"] == model]
        means = {}
        for f in sel:
            means.setdefault((f["method"], f["target"]), []).append(f)
        points = [
            {
                "method": m,
                "kept_macs": statistics.mean(x["kept_macs"] for x in fs),
                "clean_accuracy": statistics.mean(x["clean_accuracy"] for x in fs),
                "pgd": statistics.mean(x["pgd"] for x in fs),
            }
            for (m, _t), fs in means.items()
        ]
        o = originals[model]
        plot_methods(
            points,
            out / "plots" / model,
            title=f"{model}: real-data accuracy after data-free pruning",
            originals={"clean_accuracy": o["clean_accuracy"], "pgd": o["robust_accuracy"]["pgd"]},
        )
