"""Compare search settings over several seeds on the validation split (never the test set).

    python benchmarks/tune_seeds.py --cells resnet20:0.5 cnn:0.5 --seeds 0 1 2 --configs default rescore

One seed's difference under ~2 points is noise (results/tune_gpu.md), so a setting is only
adopted on the mean over seeds. Each cell is built exactly as ``robustprune bench --suite full``
builds its search cell (same probes and seeds), with the named change on top; the committed
model is measured on train[55000:] (clean accuracy on 5,000 images, PGD at eps 0.01, 10 steps,
on 1,000). Writes a markdown table with one row per (cell, configuration). A configuration
that only changes ``rescore`` is not run where the default search chose l1 (rescoring does
not apply there, so it would be the same search); its row repeats the default's numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

from robustprune import search, zoo
from robustprune._io import atomic_write_text
from robustprune._provenance import provenance
from robustprune.bench import load_suite
from robustprune.evaluate.attacks import robust_accuracy
from robustprune.evaluate.metrics import accuracy, predict_logits
from robustprune.search.engine import RESCORED_CRITERIA
from robustprune.search.schedule import default_steps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.tune_search import validation  # noqa: E402

RESULTS = Path(__file__).resolve().parent.parent / "results"

#: name -> the SearchConfig fields it changes from the full suite's search cell
CONFIGS: dict[str, dict] = {
    "default": {},
    "rescore": {"rescore": "synthetic"},
    "rescore_adv": {"rescore": "synthetic+adversarial"},
    "trials48": {"trials": 48},
    "trials96": {"trials": 96},
    "rescore+trials48": {"rescore": "synthetic", "trials": 48},
    "probes512": {"probe_images": 512},  # twice the synthetic (and so adversarial) probes
    "steps_fine": {"step_fraction": 0.05},  # one step per 5% of the original cost instead of 10%
}


def configured(config, change: dict):
    """``config`` with ``change`` on top; ``probe_images`` sets the number of synthetic probes,
    ``step_fraction`` the step count (one step per that fraction of the original cost)."""
    change = dict(change)
    images = change.pop("probe_images", None)
    fraction = change.pop("step_fraction", None)
    if fraction is not None:
        change["steps"] = default_steps(config.target, per_step=fraction)
    if images is not None:
        probes = config.probes
        config = dataclasses.replace(
            config, probes=dataclasses.replace(probes, synthetic=dataclasses.replace(probes.synthetic, n=images))
        )
    return dataclasses.replace(config, **change)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=["resnet20:0.5"], help="model:target pairs")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=["default", "rescore"], choices=sorted(CONFIGS))
    parser.add_argument("--eps", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "tune_seeds.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/tune_seeds.py " + " ".join(sys.argv[1:] if argv is None else argv)
    x_val, y_val, x_att, y_att = validation()
    suite = load_suite("full")
    seeds = " | ".join(f"s{s} clean / PGD (s) [proxy score]" for s in args.seeds)
    lines = [
        "# Search settings over seeds on the validation split",
        "",
        f"Produced by `{command.strip()}` at commit `{provenance()['commit']}` on {provenance()['machine']}. "
        f"Validation split train[55000:] (the test set is not used): clean accuracy (%) on 5,000 images / "
        f"PGD (eps {args.eps:g}, 10 steps) accuracy on 1,000, the search's seconds and the objective value "
        "(proxy score) of its last committed step. Each cell is the full "
        "suite's search cell for that seed, with the configuration's change on top: "
        + "; ".join(f"`{n}` = {CONFIGS[n] or 'as the suite'}" for n in args.configs)
        + ".",
        "",
        f"| cell | configuration | {seeds} | mean clean | mean PGD |",
        "|---|---|" + "---|" * len(args.seeds) + "---|---|",
    ]
    for cell in args.cells:
        name, target = cell.split(":")
        model, spec = zoo.load(name)
        kind = suite.models[name]
        runs: dict[str, list[tuple[float, float, float, float] | None]] = {c: [] for c in args.configs}
        for seed in args.seeds:
            chosen = None  # the criterion the default run chose; rescoring cannot change an l1 search
            for config_name in args.configs:
                change = CONFIGS[config_name]
                if chosen is not None and set(change) == {"rescore"} and chosen not in RESCORED_CRITERIA:
                    runs[config_name].append(None)  # the same search as the default: not run again
                    continue
                config = configured(suite.search_config(kind, float(target), seed), change)
                start = time.time()
                result = search(model, spec, config=config, quiet=True)
                seconds = time.time() - start
                if not change:
                    chosen = result.config.importance
                pruned = result.model
                clean = 100 * accuracy(predict_logits(pruned, spec, x_val), y_val)
                pgd = 100 * robust_accuracy(pruned, spec, x_att, y_att, attack="pgd", eps=args.eps, steps=10)
                score = result.history[-1].score if result.history else float("nan")
                runs[config_name].append((clean, pgd, seconds, score))
                print(
                    cell,
                    config_name,
                    seed,
                    result.config.importance,
                    f"proxy score {score:.4f}",
                    f"{clean:.2f} {pgd:.1f} {seconds:.0f}s",
                    file=sys.stderr,
                    flush=True,
                )
        for config_name, per_seed in runs.items():
            filled = [r or runs["default"][i] for i, r in enumerate(per_seed)] if "default" in runs else per_seed
            cells = " | ".join(
                f"{c:.2f} / {p:.1f} ({s:.0f}) [{v:.4f}]" if r else f"= default ({c:.2f} / {p:.1f})"
                for r, (c, p, s, v) in zip(per_seed, filled, strict=True)
            )
            mean_clean = statistics.mean(r[0] for r in filled)
            mean_pgd = statistics.mean(r[1] for r in filled)
            lines.append(f"| {cell} | {config_name} | {cells} | {mean_clean:.2f} | {mean_pgd:.2f} |")
        atomic_write_text(args.out, "\n".join(lines) + "\n")  # partial results survive an interruption
    print("\n".join(lines))


if __name__ == "__main__":
    main()
