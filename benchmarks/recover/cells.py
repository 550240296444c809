"""Issue 16: data-free recovery after the default search, before -> after. Writes results/recover[_val].md.

    python -m benchmarks.recover --split val        # the decision run: the loss/input ablation (validation)
    python -m benchmarks.recover --split test       # the claim, once, after the decision: the full recipe grid
    python -m benchmarks.recover --split val --summarize-only   # the table from the finished cells
    python -m benchmarks.recover --sanity [--steps 150 ...]     # a quick before -> after check (no results file)

A cell is (model, target, seed, recipe): the default search's result for (model, target, seed)
(``rp.search`` with the ablation suite's config: data-free and deterministic) is recovered with
the recipe and evaluated on the split. Start points are read from a bench run folder when one
exists (``<start dir>/<model>__search__<target>__s<seed>/``, e.g. the ablation's
results/ablation_val/models/), else the search is run here and its folder cached under
``<out>/starts/`` (git-ignored); the synthetic pool is made once per (model, seed) and shared by the
recipes (``<out>/pools/``, git-ignored). Cells are written to ``<out>/cells/`` as they finish; a rerun skips
them. The start point's own evaluation ("before") and the original's are cells too.

Recipes (each adds one thing to the previous; all on synthetic inputs unless named ``real``):
``kd`` logit KD only, ``kd+feat`` + DFBF intermediate supervision, ``kd+feat+sp`` + SP-KD,
``kd+feat+sp+op`` + linear over-parameterization, ``full`` + adversarial inputs, ``full_real550`` the
full recipe on the first 550 real training images (1%: the upper bound; train[:550] does not overlap the
validation split train[55000:]), ``full_fresh`` the full recipe on a freshly inverted batch every step
instead of the augmented pool (not in the default grid: its cost). ``default`` is the library's
RecoverConfig() (the recipe chosen on validation, docs/defaults.md), ``default_real550`` the same on
the 550 real images; the test grid runs these two.

Evaluation: ``evaluate`` on the split (evaluation seed 0 for every cell, eps 0.01, no latency) for
clean, PGD, corruption and OOD AUROC; per-image clean and PGD-10 correctness on fixed images for
paired intervals (robustprune/evaluate/stats.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from benchmarks._common import RESULTS, ROOT
from benchmarks.recover.table import recover_markdown
from robustprune import zoo
from robustprune._io import atomic_write_json, atomic_write_text
from robustprune._provenance import provenance
from robustprune.bench import baseline_model, cell_id, load_suite
from robustprune.data.fashion_mnist import load_fashion_mnist
from robustprune.evaluate.harness import EvalSettings, evaluate
from robustprune.evaluate.paired import PairedSettings, correctness, pack
from robustprune.probes.cache import cached_generate
from robustprune.recover import RecoverConfig, recover
from robustprune.recover.inputs import synthetic_pool
from robustprune.search import search
from robustprune.structure import candidate_of, load_pruned, save_pruned

_FULL = {"feature_weight": 1.0, "sp_weight": 1000.0, "expand": 4, "adv_fraction": 0.25}  # every component on
# Each recipe names every switch, so its meaning does not move with the library defaults; ``default`` is
# RecoverConfig() as shipped (what ``rp.recover`` and ``robustprune recover`` run).
RECIPES: dict[str, dict] = {
    "kd": {**_FULL, "feature_weight": 0.0, "sp_weight": 0.0, "expand": 1, "adv_fraction": 0.0},
    "kd+feat": {**_FULL, "sp_weight": 0.0, "expand": 1, "adv_fraction": 0.0},
    "kd+feat+sp": {**_FULL, "expand": 1, "adv_fraction": 0.0},
    "kd+feat+sp+op": {**_FULL, "adv_fraction": 0.0},
    "full": _FULL,
    "full_real550": _FULL,
    "full_fresh": {**_FULL, "inputs": "fresh"},
    "default": {},
    "default_real550": {},
}
REAL_IMAGES = 550  # train[:550], 1% of the training split
# the decision run (validation) and the claim (test, after the decision)
GRIDS = {
    "val": {
        "models": ["resnet20", "mobilenetv2"],
        "targets": [0.5],
        "seeds": [0],
        "recipes": [r for r in RECIPES if r != "full_fresh" and not r.startswith("default")],
    },
    "test": {"models": ["resnet20", "cnn", "mobilenetv2", "mlp"], "targets": [0.5, 0.3], "seeds": [0, 1, 2]},
}
GRIDS["test"]["recipes"] = ["default", "default_real550"]
START_DIRS = [RESULTS / "ablation_val" / "models", RESULTS / "ablation" / "models"]
PAIRED = {"eps": 0.01, "n_pgd": 1000, "apgd": False, "image_seed": 0}


def recipe_config(recipe: str, seed: int, overrides: dict) -> RecoverConfig:
    """The recipe's RecoverConfig: library defaults, the recipe's switches, then the run's budget overrides."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; one of {', '.join(RECIPES)}")
    return RecoverConfig(**{**RECIPES[recipe], **overrides, "seed": seed})


def budget_tag(overrides: dict) -> str:
    """'' for the default budget, else e.g. 'steps300-batch_size64' (kept apart in cell names)."""
    return "-".join(f"{k}{v}" for k, v in sorted(overrides.items()))


def recover_cell_id(model: str, target: float, seed: int, recipe: str, tag: str = "", start: str = "search") -> str:
    origin = "" if start == "search" else f"from_{start}__"
    return f"{model}__{target:g}__s{seed}__{origin}{recipe}" + (f"__{tag}" if tag else "")


def _settings(split: str) -> tuple[EvalSettings, PairedSettings]:
    return EvalSettings(split=split, seed=0, eps=0.01, latency=False), PairedSettings(split=split, **PAIRED)


def measure(model: torch.nn.Module, spec, split: str) -> dict:
    """The evaluation report and per-image clean / PGD correctness of one model on the split."""
    settings, paired = _settings(split)
    report = evaluate(model, spec, settings=settings, quiet=True)
    per_image = {name: pack(v) for name, v in correctness(model, spec, paired).items()}
    return {"report": report, "per_image": per_image}


def start_point(
    model_name: str, target: float, seed: int, method: str, start_dirs: list[Path], cache: Path, log
) -> Path:
    """The run folder of ``method`` (the default search, or a bench baseline) for (model, target, seed):
    found in a bench models/ folder, or pruned here as the bench would and cached."""
    name = cell_id(model_name, method, target, seed)
    for folder in [*start_dirs, cache]:
        if (folder / name / "spec.json").is_file() and (folder / name / "pruned.pt").is_file():
            return folder / name
    suite = load_suite("ablation_val")  # the default search config, as the ablation runs it
    model, spec = zoo.load(model_name)
    kind = suite.models[model_name]
    config = suite.search_config(kind, target, seed)
    log(f"{name}: no start point found; pruning")
    start = time.time()
    if method == "search":
        result = search(model, spec, config=config, quiet=True)
        saved, pruned, info = (result.space, result.candidate), result.model, {"stop": result.stop_reason}
    else:  # one-shot baseline; +bn re-estimates BN on the search's synthetic probes, as in the bench
        inputs = spec.normalize(cached_generate(model, spec, config.probe_config.synthetic).pixels)
        pruned, _, saved = baseline_model(
            model, spec, method, inputs, seed=seed, with_candidate=True, **{f"target_{kind}": target}
        )
        info = {}
    save_pruned(cache / name, *saved, pruned, f"zoo:{model_name}")
    atomic_write_json(cache / name / "start.json", {"seconds": time.time() - start, **info})
    return cache / name


def shared_pool(original, spec, config: RecoverConfig, cache: Path, log) -> tuple[torch.Tensor, float]:
    """The recipe's synthetic pool, synthesized once per (model, seed, synthesis settings) and shared by the
    recipes (each would invert the same images); returns it with the seconds its synthesis took."""
    timing = cache / f"pool_seconds_{config.pool_size}_{config.synthetic.steps}.json"
    cache = cache / f"{config.pool_size}_{config.synthetic.steps}"
    cache.mkdir(parents=True, exist_ok=True)
    pixels, seconds = synthetic_pool(original, spec, config, device=torch.device("cpu"), cache_dir=cache)
    if seconds > 0:
        log(f"  synthesized a pool of {config.pool_size} in {seconds:.0f}s")
        atomic_write_json(timing, {"seconds": seconds})
    elif timing.is_file():
        seconds = json.loads(timing.read_text())["seconds"]
    return pixels, seconds


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _write_cell(path: Path, row: dict) -> None:
    command = "python -m benchmarks.recover " + " ".join(sys.argv[1:])
    row["provenance"] = provenance(threads=torch.get_num_threads(), loadavg=os.getloadavg(), command=command)
    atomic_write_json(path, row)


def run_cell(model_name: str, target: float, seed: int, recipe: str, overrides: dict, args, log) -> None:
    """Evaluate the original and the start point once, then recover with ``recipe`` and evaluate the result."""
    cells = args.out / "cells"
    cells.mkdir(parents=True, exist_ok=True)
    original, spec = zoo.load(model_name)
    base = {"model": model_name, "split": args.split}
    path = cells / f"{model_name}__original.json"
    if not path.is_file():
        log(f"{path.stem}: evaluating")
        _write_cell(path, {**base, "stage": "original", **measure(original, spec, args.split)})
    folder = start_point(model_name, target, seed, args.start, args.start_dirs, args.out / "starts", log)
    pruned, _, data = load_pruned(folder)
    ident = {**base, "target": target, "seed": seed, "start_method": args.start, "start": _shown(folder)}
    path = cells / f"{recover_cell_id(model_name, target, seed, 'before', start=args.start)}.json"
    if not path.is_file():
        log(f"{path.stem}: evaluating")
        _write_cell(path, {**ident, "stage": "before", **measure(pruned, spec, args.split)})
    if args.starts_only:
        return
    tag = budget_tag(overrides)
    path = cells / f"{recover_cell_id(model_name, target, seed, recipe, tag, args.start)}.json"
    if path.is_file():
        return
    config = recipe_config(recipe, seed, overrides)
    pool, pool_seconds = None, 0.0  # fresh inputs: synthesized inside recover, timed in its seconds
    if recipe.endswith("_real550"):
        pool = load_fashion_mnist("train")[0][:REAL_IMAGES]
    elif config.inputs == "pool":
        pool, pool_seconds = shared_pool(original, spec, config, args.out / "pools" / f"{model_name}__s{seed}", log)
    candidate = candidate_of(data)
    log(f"{path.stem}: recovering")
    cpu = time.process_time()  # CPU seconds of this process: less sensitive to a contended machine than wall time
    checkpoints = args.out / "checkpoints" / path.stem
    result = recover(
        pruned,
        original,
        spec,
        config,
        candidate=candidate,
        exclude=tuple(data.get("exclude", ())),
        checkpoint_dir=checkpoints,
        pool=pool,
        quiet=True,
        log=lambda line: log(f"  {line}"),
    )
    cpu = time.process_time() - cpu
    row = {**ident, "stage": "after", "recipe": recipe, "budget": tag, **measure(result.model, spec, args.split)}
    summary = result.summary()
    row["recover"] = {k: summary[k] for k in ("config", "seconds", "params", "loss_first", "loss_last")}
    row["recover"]["pool_seconds"] = pool_seconds  # synthesis of the (shared) pool, not in "seconds"
    row["recover"]["cpu_seconds"] = cpu  # training (and the pool when this cell synthesized it), all threads
    row["recover"]["loss_curve"] = result.losses[:: max(1, len(result.losses) // 50)]
    _write_cell(path, row)
    log(f"{path.stem}: clean {100 * row['report']['clean_accuracy']:.2f}% in {result.seconds:.0f}s")


def _overrides(args) -> dict:
    given = {"steps": args.steps, "batch_size": args.batch_size, "pool_size": args.pool_size}
    return {k: v for k, v in given.items() if v is not None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.recover", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", choices=("val", "test"), required=True)
    parser.add_argument("--models", nargs="+", help="default: the split's grid (GRIDS)")
    parser.add_argument("--targets", nargs="+", type=float)
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES))
    parser.add_argument("--steps", type=int, help="override the recipe's training steps (tagged in the cell name)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--pool-size", type=int)
    parser.add_argument(
        "--start", default="search", help="what recovery starts from: search (default) or a bench baseline method"
    )
    parser.add_argument("--start-dirs", nargs="*", type=Path, default=START_DIRS, help="bench models/ folders")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--starts-only", action="store_true", help="only the start points and their before / original cells"
    )
    parser.add_argument("--summarize-only", action="store_true")
    parser.add_argument("--out", type=Path, help="results folder (default results/recover[_val]; the .md beside it)")
    args = parser.parse_args(argv)
    name = "recover_val" if args.split == "val" else "recover"
    args.out = args.out or RESULTS / name
    grid = GRIDS[args.split]
    models, targets = args.models or grid["models"], args.targets or grid["targets"]
    seeds, recipes = args.seeds or grid["seeds"], args.recipes or grid["recipes"]
    torch.set_num_threads(args.threads)

    def log(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    if not args.summarize_only:
        for seed in seeds:  # seed-major: a partial run covers every model and target with one seed first
            for model_name in models:
                for target in targets:
                    for recipe in recipes:
                        run_cell(model_name, target, seed, recipe, _overrides(args), args, log)
    rows = [json.loads(p.read_text()) for p in sorted((args.out / "cells").glob("*.json"))]
    if not rows:
        sys.exit(f"no finished cells in {args.out}/cells")
    command = "python -m benchmarks.recover " + " ".join(argv if argv is not None else sys.argv[1:])
    prov = provenance()
    text = recover_markdown(rows, args.split)
    commands = sorted({r["provenance"]["command"] for r in rows if "command" in r.get("provenance", {})})
    if commands:
        text += "\nCells computed by:\n\n" + "".join(f"- `{c}`\n" for c in commands)
    text += (
        f"\nTable written by `{command}` at commit {prov['commit']} on {prov['machine']}, torch {prov['torch']}; "
        f"each cell's JSON in {_shown(args.out)}/cells holds its own provenance (commit, machine, threads, load).\n"
    )
    atomic_write_text(args.out.parent / f"{args.out.name}.md", text)
    print(text)
