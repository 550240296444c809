"""Which data-free compensation helps a model without BatchNorm (nothing to re-estimate)?

    nice -n 5 python -m benchmarks.nobn_compensation [--model convnext] [--targets 0.7 0.5]
        [--search-target 0.5] [--steps 5] [--trials 8] [--seed 0] [--probe-images 256] [--probe-steps 100]

Compared, on the validation split (train[55000:]; never the test split):

- none: removed channels are just cut;
- merge: neuron merging into the most similar kept channel (``compensate.merge_overrides``);
- bias: each consumer's bias absorbs the mean contribution of the channels it loses, the means
  measured on the search's synthetic probes (``compensate.bias_overrides``).

Two settings: (1) fixed candidates, the uniform candidate at each MACs target with the no-BN
criterion (merge saliency); (2) the search path, one search per compensation to
``--search-target`` with a trimmed schedule (``--steps`` steps, ``--trials`` trials). One probe
seed (``--seed``); paired bootstrap intervals over the validation images
(robustprune/evaluate/stats.py). Writes results/nobn_compensation.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from robustprune import zoo
from robustprune._io import atomic_write_text
from robustprune._provenance import provenance
from robustprune.criteria import all_scores
from robustprune.data.fashion_mnist import load_eval_split
from robustprune.evaluate.metrics import predict_logits
from robustprune.evaluate.stats import compare
from robustprune.probes.probeset import build_probes
from robustprune.proxies import CandidateModule
from robustprune.search.engine import SEARCH_PROBES, SearchConfig, search
from robustprune.search.objective import Evaluator
from robustprune.select import uniform_candidate
from robustprune.structure import PruneSpace, masked
from robustprune.targets import Target

RESULTS = Path(__file__).resolve().parent.parent / "results"
CHOICES = {"none": (), "merge": ("merge",), "bias": ("bias",)}


def correct(model: torch.nn.Module, spec, x, y) -> torch.Tensor:
    return (predict_logits(model, spec, x).argmax(1) == y).double()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="convnext")
    parser.add_argument("--targets", nargs="+", type=float, default=[0.7, 0.5])
    parser.add_argument("--search-target", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe-images", type=int, default=SEARCH_PROBES.synthetic.n)
    parser.add_argument("--probe-steps", type=int, default=SEARCH_PROBES.synthetic.steps)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "robustprune-bench"))
    parser.add_argument("--out", default=str(RESULTS / "nobn_compensation.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python -m benchmarks.nobn_compensation " + " ".join(sys.argv[1:] if argv is None else argv)
    prov = provenance()
    model, spec = zoo.load(args.model)
    x_val, y_val = load_eval_split("val")
    space = PruneSpace(model, spec)
    base = correct(model, spec, x_val, y_val)
    synthetic = dataclasses.replace(SEARCH_PROBES.synthetic, n=args.probe_images, steps=args.probe_steps)
    probe_config = dataclasses.replace(SEARCH_PROBES, synthetic=synthetic, n_undesired=args.probe_images)
    probes = build_probes(model, spec, space.output_layer, probe_config.seeded(args.seed), cache_dir=args.cache)
    lines = [
        f"# Compensation without BatchNorm: {args.model} on the validation split",
        "",
        f"Produced by `{command.strip()}` at commit `{prov['commit']}` on {prov['machine']}, torch {prov['torch']}; "
        f"probe seed {args.seed} (one seed); probes: {args.probe_images} synthetic images ({args.probe_steps} Adam "
        f"steps), their PGD versions and {args.probe_images} undesired inputs (the search's default is "
        f"{SEARCH_PROBES.synthetic.n} x {SEARCH_PROBES.synthetic.steps}). Validation = train[55000:], "
        f"{len(y_val)} images; unpruned: {100 * base.mean():.2f}%. "
        "Differences are paired bootstrap 95% intervals in accuracy points (robustprune/evaluate/stats.py).",
        "",
        "## Fixed candidates (uniform, merge-saliency ranking)",
        "",
        "| target (MACs) | none | merge | bias | merge - none | bias - none | bias - merge |",
        "|---|---|---|---|---|---|---|",
    ]
    scores = all_scores(space, "merge_saliency")
    for target in args.targets:
        candidate = uniform_candidate(space, Target(macs=target), scores)
        acc = {}
        for label, comp in CHOICES.items():
            overrides = Evaluator(space, probes, scores, comp).overrides(candidate)
            with masked(space, candidate):
                acc[label] = correct(CandidateModule(space.model, overrides), spec, x_val, y_val)
        lines.append(_row(f"{target:g}", acc))
        print(lines[-1], file=sys.stderr, flush=True)
    lines += [
        "",
        f"## Search path (target {args.search_target:g} MACs, {args.steps} steps x {args.trials} trials, seed "
        f"{args.seed})",
        "",
        "| target (MACs) | none | merge | bias | merge - none | bias - none | bias - merge |",
        "|---|---|---|---|---|---|---|",
    ]
    acc = {}
    for label, comp in CHOICES.items():
        config = SearchConfig(
            target_macs=args.search_target,
            compensation=comp,
            steps=args.steps,
            trials=args.trials,
            seed=args.seed,
            probes=probe_config,
        )
        result = search(model, spec, config=config, cache_dir=args.cache, quiet=True)
        acc[label] = correct(result.model, spec, x_val, y_val)
        print(f"search {label}: {100 * acc[label].mean():.2f}%", file=sys.stderr, flush=True)
    lines.append(_row(f"{args.search_target:g}", acc))
    atomic_write_text(Path(args.out), "\n".join(lines) + "\n")
    print("\n".join(lines))


def _row(target: str, acc: dict[str, torch.Tensor]) -> str:
    cells = [f"{100 * acc[k].mean():.2f}%" for k in CHOICES]
    pairs = [("merge", "none"), ("bias", "none"), ("bias", "merge")]
    diffs = [compare(acc[a].numpy(), acc[b].numpy()).describe().split(" (per seed")[0] for a, b in pairs]
    return f"| {target} | " + " | ".join(cells + diffs) + " |"


if __name__ == "__main__":
    main()
