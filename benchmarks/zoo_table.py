"""Evaluate every zoo model with the real-data harness and write results/zoo.md and results/zoo.json.

python -m benchmarks.zoo_table [--threads 2] [--seed 0]
"""

from __future__ import annotations

import argparse

from benchmarks._common import RESULTS, log, start
from robustprune import zoo
from robustprune._io import atomic_write_json, atomic_write_text
from robustprune._provenance import provenance
from robustprune.evaluate.harness import EvalSettings, evaluate


def markdown(rows: dict[str, dict], prov: dict, command: str) -> str:
    ood_names = list(next(iter(rows.values()))["ood_auroc"])
    header = [
        "model",
        "clean acc",
        "FGSM acc",
        "PGD acc",
        "corruption acc",
        *[f"AUROC {n}" for n in ood_names],
        "ECE",
        "MACs (M)",
        "params (k)",
        "latency b1 (ms)",
        "latency b256 (ms)",
    ]
    lines = [
        "# Reference zoo on Fashion-MNIST",
        "",
        f"Produced by `{command}` at commit `{prov['commit']}`, seed {prov['seed']}, on {prov['machine']} "
        f"(torch {prov['torch']}).",
        "",
        "Clean accuracy and ECE on all 10,000 test images; FGSM and PGD (L-inf, eps 0.1 in [0,1] pixel space, "
        "PGD 10 steps, random start) on a fixed seeded subset of 1,000 test images; corruption accuracy is the "
        "mean over 8 corruptions x 5 severities on a fixed subset of 1,000 images; OOD AUROC uses the max-softmax "
        "score against sklearn digits (far-OOD), vertically flipped test images (near-OOD) and uniform noise. "
        "Latency is the median of repeated CPU forward passes.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name, r in rows.items():
        cells = [
            name,
            f"{100 * r['clean_accuracy']:.2f}%",
            f"{100 * r['robust_accuracy']['fgsm']:.2f}%",
            f"{100 * r['robust_accuracy']['pgd']:.2f}%",
            f"{100 * r['corruption_accuracy']:.2f}%",
            *[f"{r['ood_auroc'][n]:.4f}" for n in ood_names],
            f"{r['ece']:.4f}",
            f"{r['macs'] / 1e6:.2f}",
            f"{r['params'] / 1e3:.1f}",
            f"{r['latency_ms']['batch1']:.2f}",
            f"{r['latency_ms']['batch256']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Corruption accuracy per corruption (mean over severities 1-5):", ""]
    corr_names = list(next(iter(rows.values()))["corruption_accuracy_per"])
    lines += ["| model | " + " | ".join(corr_names) + " |", "|" + "---|" * (len(corr_names) + 1)]
    for name, r in rows.items():
        lines.append(
            f"| {name} | " + " | ".join(f"{100 * r['corruption_accuracy_per'][c]:.2f}%" for c in corr_names) + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=zoo.names(), choices=zoo.names())
    args = parser.parse_args(argv)
    command = start("zoo_table", argv, args.threads)
    rows = {}
    for name in args.models:
        model, spec = zoo.load(name)
        rows[name] = evaluate(model, spec, settings=EvalSettings(seed=args.seed), model_ref=f"zoo:{name}")
        log(f"{name}: clean {rows[name]['clean_accuracy']:.4f}")
    prov = provenance(seed=args.seed)
    RESULTS.mkdir(exist_ok=True)
    atomic_write_json(RESULTS / "zoo.json", {"command": command, "provenance": prov, "models": rows})
    atomic_write_text(RESULTS / "zoo.md", markdown(rows, prov, command))


if __name__ == "__main__":
    main()
