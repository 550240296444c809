"""Compare search settings (and one-shot rivals) on cells of the full suite, on the validation split.

    python -m benchmarks.tune --cells resnet20:0.5 cnn:0.5 --seeds 0 1 2 --configs default rescore
    python -m benchmarks.tune --cells resnet20:0.7 --configs default l1_uniform+bn --split val test
    python -m benchmarks.tune --radii 0.005 0.01 0.02 0.03 --radius-models mlp cnn resnet20 mobilenetv2

Each cell (model:target, the target limiting the cost the full suite names for the model) is built
exactly as ``robustprune bench --suite full`` builds its search cell for that seed (same probes and
seeds), with a configuration from ``CONFIGS`` on top; a name ``BASELINE`` or ``BASELINE+bn`` runs
that one-shot method instead. The committed model is measured on each ``--split``: clean accuracy
on the whole split and PGD (10 steps) on a fixed 1,000 of its images. Decide on ``val``
(train[55000:], never trained on); ``test`` is for the single run after the decision
(results/PROTOCOL.md). A configuration that only changes ``rescore`` is not rerun where the default
search chose a criterion rescoring cannot change: its row repeats the default's numbers.

``--radii``: PGD accuracy of the original models at a few radii, to choose an attack radius at which
the originals keep a clear, measurable robust accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

from benchmarks._common import RESULTS, log, produced_by, split, start
from robustprune import search, zoo
from robustprune._io import atomic_write_text
from robustprune.baselines import METHODS
from robustprune.bench import baseline_model, load_suite
from robustprune.evaluate.attacks import robust_accuracy
from robustprune.evaluate.metrics import accuracy, predict_logits
from robustprune.models import check_device
from robustprune.probes.cache import cached_generate
from robustprune.search.engine import RESCORED_CRITERIA
from robustprune.search.schedule import default_steps

#: name -> the SearchConfig fields it changes from the full suite's search cell. Special keys:
#: ``probe_images`` (synthetic probes), ``step_fraction`` (one step per that fraction of the cost),
#: ``robust_weight`` (the objective's robust_fidelity weight).
CONFIGS: dict[str, dict] = {
    "default": {},
    "rescore": {"rescore": "synthetic"},
    "rescore_adv": {"rescore": "synthetic+adversarial"},
    "no_rescore": {"rescore": "off"},
    "trials48": {"trials": 48},
    "trials96": {"trials": 96},
    "rescore+trials48": {"rescore": "synthetic", "trials": 48},
    "probes512": {"probe_images": 512},
    "steps_fine": {"step_fraction": 0.05},
    "uniform": {"enqueue_uniform": True},
    "l1": {"importance": "l1"},
    "taylor_synthetic": {"importance": "taylor_synthetic"},
    "taylor_l1": {"importance": "taylor_l1"},
    "bn_scale": {"importance": "bn_scale"},
    "merge_saliency": {"importance": "merge_saliency"},
    "merge+bn": {"compensation": ("merge", "bn")},
    "merge_saliency+merge": {"importance": "merge_saliency", "compensation": ("merge", "bn")},
    "trials48+merge": {"trials": 48, "compensation": ("merge", "bn")},
    "trials96+merge": {"trials": 96, "compensation": ("merge", "bn")},
    "taylor+trials48": {"importance": "taylor_synthetic", "trials": 48},
    "taylor+merge": {"importance": "taylor_synthetic", "compensation": ("merge", "bn")},
    "taylor+trials48+merge": {"importance": "taylor_synthetic", "trials": 48, "compensation": ("merge", "bn")},
    "robust1.0": {"robust_weight": 1.0},
}


def configured(config, change: dict):
    """``config`` with ``change`` (an entry of ``CONFIGS``) on top."""
    change = dict(change)
    images = change.pop("probe_images", None)
    fraction = change.pop("step_fraction", None)
    robust = change.pop("robust_weight", None)
    if fraction is not None:
        change["steps"] = default_steps(config.target, per_step=fraction)
    if robust is not None:
        change["weights"] = {**config.weights, "robust_fidelity": robust}
    if images is not None:
        probes = config.probes
        synthetic = dataclasses.replace(probes.synthetic, n=images)
        config = dataclasses.replace(config, probes=dataclasses.replace(probes, synthetic=synthetic))
    return dataclasses.replace(config, **change)


def is_baseline(name: str) -> bool:
    return name not in CONFIGS and name.removesuffix("+bn") in METHODS


def radius_table(models: list[str], radii: list[float], data, device) -> list[str]:
    x, y, x_att, y_att = data
    lines = [
        "## PGD accuracy (%) of the original models on 1,000 images (10 steps)",
        "",
        "| model | clean | " + " | ".join(f"eps {r:g}" for r in radii) + " |",
        "|---|---|" + "---|" * len(radii),
    ]
    for name in models:
        model, spec = zoo.load(name, device=device)
        clean = accuracy(predict_logits(model, spec, x), y)
        pgd = [robust_accuracy(model, spec, x_att, y_att, attack="pgd", eps=r, steps=10) for r in radii]
        lines.append(f"| {name} | {100 * clean:.2f} | " + " | ".join(f"{100 * p:.1f}" for p in pgd) + " |")
        log(lines[-1])
    return lines + [""]


def run_cell(name: str, target: float, seed: int, config_name: str, suite, eps: float, data: dict, device) -> dict:
    """One (cell, seed, configuration): per split (clean %, PGD %), and the search's seconds and proxy score."""
    model, spec = zoo.load(name, device=device)
    kind = suite.models[name]
    config = suite.search_config(kind, target, seed)
    begin = time.time()
    if is_baseline(config_name):
        inputs = spec.normalize(cached_generate(model, spec, config.probe_config.synthetic).pixels)
        pruned, _ = baseline_model(model, spec, config_name, inputs, seed=seed, **{f"target_{kind}": target})
        score, chosen = float("nan"), None
    else:
        result = search(model, spec, config=configured(config, CONFIGS[config_name]), quiet=True)
        pruned, chosen = result.model, result.config.importance
        score = result.history[-1].score if result.history else float("nan")
    out = {"seconds": time.time() - begin, "score": score, "chosen": chosen}
    for split_name, (x, y, x_att, y_att) in data.items():
        clean = 100 * accuracy(predict_logits(pruned, spec, x), y)
        pgd = 100 * robust_accuracy(pruned, spec, x_att, y_att, attack="pgd", eps=eps, steps=10)
        out[split_name] = (clean, pgd)
    return out


def cell_rows(cell: str, seeds: list[int], configs: list[str], suite, eps: float, data: dict, device) -> list[str]:
    name, target = cell.split(":")
    runs: dict[str, list[dict | None]] = {c: [] for c in configs}
    for seed in seeds:
        chosen = None  # the criterion the default search chose; rescoring cannot change some
        for config_name in configs:
            change = CONFIGS.get(config_name, {})
            if chosen is not None and set(change) == {"rescore"} and chosen not in RESCORED_CRITERIA:
                runs[config_name].append(None)  # the same search as the default: not run again
                continue
            run = run_cell(name, float(target), seed, config_name, suite, eps, data, device)
            if config_name == "default":
                chosen = run["chosen"]
            runs[config_name].append(run)
            log(cell, config_name, seed, run["chosen"], {k: run[k] for k in data}, f"{run['seconds']:.0f}s")
    lines = []
    for config_name, per_seed in runs.items():
        filled = [r or runs["default"][i] for i, r in enumerate(per_seed)]  # None only where default ran
        for split_name in data:
            cells = " | ".join(
                f"{r[split_name][0]:.2f} / {r[split_name][1]:.1f} ({r['seconds']:.0f}) [{r['score']:.4f}]"
                if own
                else f"= default ({r[split_name][0]:.2f} / {r[split_name][1]:.1f})"
                for own, r in zip(per_seed, filled, strict=True)
            )
            clean = statistics.mean(r[split_name][0] for r in filled)
            pgd = statistics.mean(r[split_name][1] for r in filled)
            lines.append(f"| {cell} | {config_name} | {split_name} | {cells} | {clean:.2f} | {pgd:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="*", default=[], help="model:target pairs, e.g. resnet20:0.5")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=["default"], help=f"of {', '.join(CONFIGS)}, or a baseline")
    parser.add_argument("--split", nargs="+", choices=("val", "test"), default=["val"])
    parser.add_argument("--eps", type=float, default=0.01, help="PGD radius")
    parser.add_argument("--radii", nargs="*", type=float, default=[], help="also the originals' PGD at these radii")
    parser.add_argument("--radius-models", nargs="+", default=["mlp", "cnn", "resnet20", "mobilenetv2"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="where the methods and the measurements run (cpu, cuda)")
    parser.add_argument("--out", default=str(RESULTS / "tune.md"))
    args = parser.parse_args(argv)
    unknown = [c for c in args.configs if c not in CONFIGS and not is_baseline(c)]
    if unknown:
        parser.error(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)} or a baseline")
    if not args.cells and not args.radii:
        parser.error("nothing to do: give --cells and/or --radii")
    if "default" not in args.configs and any(set(CONFIGS.get(c, {})) == {"rescore"} for c in args.configs):
        args.configs.insert(0, "default")  # a rescore-only row may repeat the default's numbers
    check_device(args.device)
    command = start("tune", argv, args.threads)
    data = {name: split(name) for name in args.split}
    seeds = " | ".join(f"s{s} clean / PGD (s) [proxy score]" for s in args.seeds)
    described = "; ".join(
        f"`{n}` = {CONFIGS.get(n) or ('as the suite' if n in CONFIGS else 'the baseline')}" for n in args.configs
    )
    lines = [
        "# Search settings on cells of the full suite",
        "",
        f"{produced_by(command)}. Clean accuracy (%) on the whole split / PGD (eps {args.eps:g}, 10 steps) "
        "accuracy on 1,000 of its images, the method's seconds and the objective value (proxy score) of the "
        f"search's last committed step. Splits: {', '.join(args.split)} (val = train[55000:]). {described}.",
        "",
    ]
    if args.radii:
        lines += radius_table(args.radius_models, args.radii, data[args.split[0]], args.device)
    if args.cells:
        lines += [
            f"| cell | configuration | split | {seeds} | mean clean | mean PGD |",
            "|---|---|---|" + "---|" * len(args.seeds) + "---|---|",
        ]
    suite = load_suite("full")
    for cell in args.cells:
        lines += cell_rows(cell, args.seeds, args.configs, suite, args.eps, data, args.device)
        atomic_write_text(args.out, "\n".join(lines) + "\n")  # partial results survive an interruption
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
