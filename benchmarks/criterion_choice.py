"""Does the search's data-free criterion choice pick the criterion that is better on real data?

    python benchmarks/criterion_choice.py [--models cnn resnet20 mobilenetv2 vgg11_bn] [--targets 0.7 0.5]
                                          [--seeds 0 1 2]

With importance "auto" the search (for models with BatchNorm) scores a uniform candidate at the
final target, BN re-estimated on the probes, with each of Taylor-on-synthetic-probes, l1 and their
rank sum, and picks one from those objective values (``robustprune.search.engine._choose_criterion``).
For each model, target and probe seed (the full suite's probes for that seed) this prints that
proxy score and the candidate's accuracy on the validation split (train[55000:], never trained
on; not the test set), the plain maximum's pick and the search's (``pick_criterion``: the rank sum
unless another leads by more than ``HEDGE_MARGIN``), and the mean validation accuracy of each
rule's picks. Writes results/criterion_choice.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from robustprune import SearchConfig, zoo
from robustprune._io import atomic_write_text
from robustprune._provenance import provenance
from robustprune.baselines import uniform_candidate
from robustprune.bench import load_suite
from robustprune.compensate import apply_overrides
from robustprune.data.fashion_mnist import load_fashion_mnist
from robustprune.evaluate.attacks import robust_accuracy
from robustprune.evaluate.metrics import accuracy, predict_logits
from robustprune.importance import all_scores
from robustprune.probes.probeset import build_probes
from robustprune.proxies import _Candidate
from robustprune.search.engine import AUTO_CRITERIA, HEDGE_MARGIN, pick_criterion
from robustprune.search.objective import Evaluator, weighted_score
from robustprune.structure import PruneSpace, export, masked

RESULTS = Path(__file__).resolve().parent.parent / "results"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["cnn", "resnet20", "mobilenetv2", "vgg11_bn"])
    parser.add_argument("--targets", nargs="+", type=float, default=[0.7, 0.5])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="probe seeds (as the full suite's cells)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--held-out",
        action="store_true",
        help="Taylor on the first half of the synthetic probes, proxies on the other half",
    )
    parser.add_argument(
        "--pgd", type=float, metavar="EPS", help="also PGD accuracy (10 steps) at EPS on 1,000 validation images"
    )
    parser.add_argument("--out", default=str(RESULTS / "criterion_choice.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/criterion_choice.py " + " ".join(sys.argv[1:] if argv is None else argv)
    x, y = load_fashion_mnist("train")
    x_val, y_val = x[55_000:], y[55_000:]
    lines = [
        "# Data-free choice of the pruning criterion vs validation accuracy",
        "",
        f"Produced by `{command.strip()}` at commit `{provenance()['commit']}` on {provenance()['machine']}; "
        "per seed the search's default probes as the full suite builds them for that seed. "
        "Uniform candidates (the uniform baselines' own: the same fraction "
        "from every group, channels given back until just under the target), BN "
        "re-estimated on the probes; validation = train[55000:]."
        + (
            " Held out: Taylor computed on the first half of the synthetic probes, the proxies measured "
            "on the other half (with its adversarial versions)."
            if args.held_out
            else ""
        ),
        "",
        "| model | target (MACs) | seed | "
        + " | ".join(f"{c} proxy score / val acc" for c in AUTO_CRITERIA)
        + f" | maximum picks | search picks (margin {HEDGE_MARGIN:g}) | better on validation |"
        + (f" val PGD (eps {args.pgd:g}): " + " / ".join(AUTO_CRITERIA) + " | better on val PGD |" if args.pgd else ""),
        "|---|---|---|" + "---|" * len(AUTO_CRITERIA) + "---|---|---|" + ("---|---|" if args.pgd else ""),
    ]
    attack_idx = torch.randperm(len(x_val), generator=torch.Generator().manual_seed(0))[:1000]
    x_att, y_att = x_val[attack_idx], y_val[attack_idx]
    agree_pgd = agree = agree_hedge = 0
    picked: dict[str, list[float]] = {"maximum": [], "search": [], "best": []}
    suite = load_suite("full")
    for name in args.models:
        model, spec = zoo.load(name)
        space = PruneSpace(model, spec)
        for seed in args.seeds:
            probe_config = suite.search_config("macs", 0.5, seed).probe_config
            probes = build_probes(model, spec, space.output_layer, probe_config)
            n_syn = len(probes.pixels["synthetic"])
            inputs = probes.inputs()[:n_syn]
            scoring = probes
            if args.held_out:
                inputs = inputs[: n_syn // 2]
                scoring = probes.split(n_syn // 2)[1]
            for target in args.targets:
                config = SearchConfig(target_macs=target)
                cells = {}
                for criterion in AUTO_CRITERIA:
                    scores = all_scores(space, criterion, inputs=inputs, seed=seed)
                    evaluator = Evaluator(space, scoring, scores, ("bn",), bn_pixels=probes.pixels["synthetic"])
                    candidate = uniform_candidate(space, config.target, scores)  # as _choose_criterion does
                    candidate, overrides, proxies = evaluator.evaluate_candidate(candidate)
                    with masked(space, candidate):
                        val = accuracy(predict_logits(_Candidate(space.model, overrides), spec, x_val), y_val)
                    pgd = None
                    if args.pgd:
                        pruned = export(space, candidate, model=apply_overrides(space.model, overrides))
                        pgd = robust_accuracy(pruned, spec, x_att, y_att, attack="pgd", eps=args.pgd, steps=10)
                    cells[criterion] = (weighted_score(proxies, config.weights), val, pgd)
                pick = max(AUTO_CRITERIA, key=lambda c: (cells[c][0], -AUTO_CRITERIA.index(c)))
                hedged = pick_criterion({c: cells[c][0] for c in AUTO_CRITERIA})
                best = max(AUTO_CRITERIA, key=lambda c: cells[c][1])
                agree += pick == best
                agree_hedge += hedged == best
                picked["maximum"].append(cells[pick][1])
                picked["search"].append(cells[hedged][1])
                picked["best"].append(cells[best][1])
                row = (
                    f"| {name} | {target:g} | {seed} | "
                    + " | ".join(f"{cells[c][0]:.4f} / {100 * cells[c][1]:.2f}%" for c in AUTO_CRITERIA)
                    + f" | {pick} | {hedged} | {best} |"
                )
                if args.pgd:
                    best_pgd = max(AUTO_CRITERIA, key=lambda c: cells[c][2])
                    agree_pgd += hedged == best_pgd
                    row += " " + " / ".join(f"{100 * cells[c][2]:.1f}%" for c in AUTO_CRITERIA) + f" | {best_pgd} |"
                lines.append(row)
                print(lines[-1], file=sys.stderr, flush=True)
    total = len(args.models) * len(args.targets) * len(args.seeds)
    mean = {k: 100 * sum(v) / len(v) for k, v in picked.items()}
    lines += [
        "",
        f"The search's pick is the better criterion on validation in {agree_hedge} of {total} cases "
        f"(the plain maximum's: {agree}). Mean validation accuracy of the picked candidate: search "
        f"{mean['search']:.2f}%, plain maximum {mean['maximum']:.2f}%, the best of the three {mean['best']:.2f}%.",
        "",
    ]
    if args.pgd:
        lines += [
            f"On validation PGD (eps {args.pgd:g}) the search's pick is the better one in {agree_pgd} of {total}.",
            "",
        ]
    atomic_write_text(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
