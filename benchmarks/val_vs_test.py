"""Do the validation split and the test set rank the search and the uniform baselines alike?

    python benchmarks/val_vs_test.py --model resnet20 --target 0.7 [--seeds 0 1 2]

The search's settings are chosen on the validation split (train[55000:], never trained on),
the claim is measured on the test set. Where a cell is lost on the test set, this says
whether validation would have shown it: for each seed it builds the full suite's search
model and its strongest one-shot rivals exactly as ``robustprune bench --suite full`` does
(same probes, same seeds) and prints clean accuracy on both splits. Writes
results/val_vs_test_<model>_<target>.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from robustprune import search, zoo
from robustprune._io import atomic_write_text
from robustprune._provenance import provenance
from robustprune.bench import baseline_model, load_suite
from robustprune.data.fashion_mnist import load_fashion_mnist
from robustprune.evaluate.metrics import accuracy, predict_logits
from robustprune.probes.cache import cached_generate

RESULTS = Path(__file__).resolve().parent.parent / "results"
RIVALS = ("l1_uniform", "taylor_uniform")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--target", type=float, default=0.7)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/val_vs_test.py " + " ".join(sys.argv[1:] if argv is None else argv)
    x, y = load_fashion_mnist("train")
    splits = {"val": (x[55_000:], y[55_000:]), "test": load_fashion_mnist("test")}
    suite = load_suite("full")
    model, spec = zoo.load(args.model)
    kind = suite.models[args.model]

    def measure(pruned) -> dict[str, float]:
        return {k: 100 * accuracy(predict_logits(pruned, spec, xs), ys) for k, (xs, ys) in splits.items()}

    rows: dict[str, list[dict[str, float]]] = {"search": [], **{f"{r}+bn": [] for r in RIVALS}}
    for seed in args.seeds:
        config = suite.search_config(kind, args.target, seed)
        rows["search"].append(measure(search(model, spec, config=config, quiet=True).model))
        inputs = spec.normalize(cached_generate(model, spec, config.probe_config.synthetic).pixels)
        for rival in RIVALS:
            pruned, _ = baseline_model(model, spec, f"{rival}+bn", inputs, seed=seed, **{f"target_{kind}": args.target})
            rows[f"{rival}+bn"].append(measure(pruned))
        print(seed, {m: r[-1] for m, r in rows.items()}, file=sys.stderr, flush=True)
    lines = [
        f"# Validation vs test: {args.model} to {args.target:g} of the original {kind}",
        "",
        f"Produced by `{command.strip()}` at commit `{provenance()['commit']}` on {provenance()['machine']}; "
        f"seeds {', '.join(map(str, args.seeds))}, built as in `robustprune bench --suite full`. Clean accuracy "
        "(%) on the validation split (train[55000:], 5,000 images) and the test set (10,000).",
        "",
        "| method | " + " | ".join(f"val s{s} | test s{s}" for s in args.seeds) + " | val mean | test mean |",
        "|---|" + "---|---|" * len(args.seeds) + "---|---|",
    ]
    for method, per_seed in rows.items():
        cells = " | ".join(f"{r['val']:.2f} | {r['test']:.2f}" for r in per_seed)
        val = statistics.mean(r["val"] for r in per_seed)
        test = statistics.mean(r["test"] for r in per_seed)
        lines.append(f"| {method} | {cells} | {val:.2f} | {test:.2f} |")
    out = RESULTS / f"val_vs_test_{args.model}_{args.target:g}.md"
    atomic_write_text(out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
