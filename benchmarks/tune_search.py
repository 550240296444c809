"""Choose the search's settings (and the benchmark's attack radius) on the validation split.

    python benchmarks/tune_search.py [--model resnet20] [--target 0.5] [--configs default trials48 ...]

Part 1, attack radius: PGD accuracy of each original zoo model on 1,000 validation images
(train[55000:], never trained on) for a few L-inf radii. A radius at which the original
model already sits near 0% cannot show whether pruning kept robustness, and a constant
(collapsed) model scores ~10% there; so the benchmark uses a radius at which the original
keeps a clear, measurable robust accuracy.

Part 2, search settings: the search is run once per named configuration; the committed model
is measured on the validation split (clean accuracy on 5,000 images, PGD at the chosen radius
on 1,000). Writes results/tune_search.md. The test set is never touched.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

from robustprune import SearchConfig, search, zoo
from robustprune._io import atomic_write_text
from robustprune._provenance import provenance
from robustprune.data.fashion_mnist import load_fashion_mnist
from robustprune.evaluate.attacks import robust_accuracy
from robustprune.evaluate.cost import count_macs_params
from robustprune.evaluate.metrics import accuracy, predict_logits

RESULTS = Path(__file__).resolve().parent.parent / "results"
RADII = (0.005, 0.01, 0.02, 0.03)
MODELS = ("mlp", "cnn", "resnet20", "mobilenetv2")


def configs(target: float, kind: str) -> dict[str, SearchConfig]:
    base = SearchConfig(**{f"target_{kind}": target})
    return {
        "default": base,
        "trials48": dataclasses.replace(base, trials=48),
        "merge+bn": dataclasses.replace(base, compensation=("merge", "bn")),
        "bn_scale": dataclasses.replace(base, importance="bn_scale"),
        "taylor_synthetic": dataclasses.replace(base, importance="taylor_synthetic"),
        "robust1.0": dataclasses.replace(base, weights={**base.weights, "robust_fidelity": 1.0}),
        # for the mlp (no BN, so only merging can compensate): Paoding-style merging
        "l1": dataclasses.replace(base, importance="l1"),
        "merge_saliency+merge": dataclasses.replace(base, importance="merge_saliency", compensation=("merge", "bn")),
        # second round: the winner of the first (taylor_synthetic) combined with the other gains
        "taylor+trials48": dataclasses.replace(base, importance="taylor_synthetic", trials=48),
        "taylor+merge": dataclasses.replace(base, importance="taylor_synthetic", compensation=("merge", "bn")),
        "taylor+trials48+merge": dataclasses.replace(
            base, importance="taylor_synthetic", trials=48, compensation=("merge", "bn")
        ),
        # third round: each step's first trial is the even step ("uniform" = enqueue_uniform)
        "uniform": dataclasses.replace(base, enqueue_uniform=True),
        "trials48+merge": dataclasses.replace(base, trials=48, compensation=("merge", "bn")),
        "trials96+merge": dataclasses.replace(base, trials=96, compensation=("merge", "bn")),
        "trials96": dataclasses.replace(base, trials=96),
    }


def validation(n_attack: int = 1000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = load_fashion_mnist("train")
    x_val, y_val = x[55_000:], y[55_000:]
    idx = torch.randperm(len(x_val), generator=torch.Generator().manual_seed(0))[:n_attack]
    return x_val, y_val, x_val[idx], y_val[idx]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--kind", choices=("macs", "params"), default="macs")
    parser.add_argument("--eps", type=float, default=0.01, help="PGD radius for part 2")
    parser.add_argument("--configs", nargs="+", help="names from part 2 (default: all)")
    parser.add_argument("--skip-radii", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="where the searches and the validation run (cpu, cuda)")
    parser.add_argument("--out", default=str(RESULTS / "tune_search.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/tune_search.py " + " ".join(sys.argv[1:] if argv is None else argv)
    x_val, y_val, x_att, y_att = validation()
    lines = [
        "# Choosing the search settings and the benchmark's attack radius on the validation split",
        "",
        f"Produced by `{command.strip()}` at commit `{provenance()['commit']}` on "
        f"{provenance()['machine']}; seed 0. Validation split = train[55000:] (never trained on); "
        "the test set is not used.",
        "",
    ]
    if not args.skip_radii:
        lines += [
            "## PGD accuracy (%) of the original models on 1,000 validation images (10 steps)",
            "",
            "| model | clean | " + " | ".join(f"eps {r:g}" for r in RADII) + " |",
            "|---|---|" + "---|" * len(RADII),
        ]
        for name in MODELS:
            model, spec = zoo.load(name)
            clean = accuracy(predict_logits(model, spec, x_val), y_val)
            pgd = [robust_accuracy(model, spec, x_att, y_att, attack="pgd", eps=r, steps=10) for r in RADII]
            lines.append(f"| {name} | {100 * clean:.2f} | " + " | ".join(f"{100 * p:.1f}" for p in pgd) + " |")
            print(lines[-1], file=sys.stderr, flush=True)
        lines.append("")
    model, spec = zoo.load(args.model)
    model = model.to(args.device)
    lines += [
        f"## Search settings: {args.model} to {args.target:g} of the original {args.kind}, seed 0",
        "",
        f"Original: {100 * accuracy(predict_logits(model, spec, x_val), y_val):.2f}% validation accuracy, "
        f"PGD(eps {args.eps:g}) {100 * robust_accuracy(model, spec, x_att, y_att, 'pgd', args.eps, steps=10):.1f}%.",
        "",
        f"| configuration | val clean acc | val PGD acc (eps {args.eps:g}) | kept {args.kind} (full op count) "
        "| search s |",
        "|---|---|---|---|---|",
    ]
    table = configs(args.target, args.kind)
    full, idx = count_macs_params(model, spec), 0 if args.kind == "macs" else 1
    for name in args.configs or table:
        start = time.time()
        result = search(model, spec, config=table[name], quiet=True)
        seconds = time.time() - start
        pruned = result.model
        clean = accuracy(predict_logits(pruned, spec, x_val), y_val)
        pgd = robust_accuracy(pruned, spec, x_att, y_att, attack="pgd", eps=args.eps, steps=10)
        kept = count_macs_params(pruned, spec)[idx] / full[idx]
        lines.append(f"| {name} | {100 * clean:.2f} | {100 * pgd:.1f} | {100 * kept:.1f}% | {seconds:.0f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
