"""Every one-shot baseline on resnet20, cnn and mlp at 30% and 50% MAC reduction, evaluated on real data.

    python benchmarks/baselines.py [--threads 2] [--seed 0]

Writes results/baselines.json (every report) and results/baselines.md (the table).
The mlp is pruned to a parameter target (its MACs equal its parameters up to biases);
paoding runs on the mlp only (it merges dense neurons; on conv layers the paper uses
plain L1 filter pruning, which is l1_uniform).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from robustprune import zoo
from robustprune._io import atomic_write_json, atomic_write_text
from robustprune._provenance import provenance
from robustprune.baselines import METHODS, baseline
from robustprune.evaluate.harness import EvalSettings, evaluate

RESULTS = Path(__file__).resolve().parent.parent / "results"
MODELS = ("resnet20", "cnn", "mlp")
FRACTIONS = (0.7, 0.5)


def cells():
    for name in MODELS:
        for fraction in FRACTIONS:
            for method in METHODS:
                if method == "paoding" and name != "mlp":
                    continue
                yield name, fraction, method


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/baselines.py " + " ".join(sys.argv[1:] if argv is None else argv)
    settings = EvalSettings(seed=args.seed, latency=False)
    rows = []
    originals = {}
    for name in MODELS:
        model, spec = zoo.load(name)
        originals[name] = evaluate(model, spec, settings=settings, model_ref=f"zoo:{name}", quiet=True)
    for name, fraction, method in cells():
        model, spec = zoo.load(name)
        kind = "params" if name == "mlp" else "macs"
        start = time.time()
        result = baseline(model, spec, method, seed=args.seed, **{f"target_{kind}": fraction})
        seconds = time.time() - start
        report = evaluate(result.model, spec, settings=settings, model_ref=f"zoo:{name}", quiet=True)
        rows.append(
            {
                "model": name,
                "method": method,
                "target_kind": kind,
                "target": fraction,
                "kept_macs": result.kept_fraction["macs"],
                "kept_params": result.kept_fraction["params"],
                "prune_seconds": seconds,
                "report": report,
            }
        )
        print(
            f"{name} {method} {kind}<={fraction}: clean {report['clean_accuracy']:.4f} "
            f"pgd {report['robust_accuracy']['pgd']:.4f}",
            file=sys.stderr,
        )
    prov = provenance(seed=args.seed)
    RESULTS.mkdir(exist_ok=True)
    atomic_write_json(
        RESULTS / "baselines.json",
        {"command": command.strip(), "provenance": prov, "originals": originals, "rows": rows},
    )
    atomic_write_text(RESULTS / "baselines.md", markdown(rows, originals, prov, command.strip()))


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def markdown(rows: list[dict], originals: dict, prov: dict, command: str) -> str:
    lines = [
        "# One-shot data-free baselines",
        "",
        f"Produced by `{command}` at commit `{prov['commit']}`, seed {prov['seed']}, on {prov['machine']} "
        f"(torch {prov['torch']}). No retraining and no BN re-estimation: these are the methods as they are.",
        "",
        "Target: the fraction of the original MACs (params for the mlp) the pruned model may keep; `--target-macs 0.7`"
        " is a 30% reduction. Metrics as in results/zoo.md: clean accuracy on 10,000 test images, PGD (eps 0.1, "
        "10 steps) on a fixed 1,000-image subset, mean accuracy over 8 corruptions x 5 severities, OOD AUROC "
        "(max softmax) against sklearn digits / flipped images / uniform noise.",
        "",
        "| model | target | method | kept MACs | kept params | clean acc | PGD acc | FGSM acc | corruption acc "
        "| AUROC digits | AUROC flipped | AUROC noise |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in MODELS:
        o = originals[name]
        lines.append(
            f"| {name} | original | - | 100% | 100% | {_pct(o['clean_accuracy'])} | "
            f"{_pct(o['robust_accuracy']['pgd'])} | {_pct(o['robust_accuracy']['fgsm'])} | "
            f"{_pct(o['corruption_accuracy'])} | "
            + " | ".join(f"{o['ood_auroc'][k]:.3f}" for k in ("digits", "flipped", "noise"))
            + " |"
        )
        for r in (r for r in rows if r["model"] == name):
            rep = r["report"]
            lines.append(
                f"| {name} | {r['target_kind']} <= {r['target']} | {r['method']} | {_pct(r['kept_macs'])} | "
                f"{_pct(r['kept_params'])} | {_pct(rep['clean_accuracy'])} | {_pct(rep['robust_accuracy']['pgd'])} | "
                f"{_pct(rep['robust_accuracy']['fgsm'])} | {_pct(rep['corruption_accuracy'])} | "
                + " | ".join(f"{rep['ood_auroc'][k]:.3f}" for k in ("digits", "flipped", "noise"))
                + " |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
