"""Architecture coverage: which torchvision and timm classifiers the prune space, the masks, one search
step and export + reload handle, with random weights at each model's native input shape.

    nice -n 10 python -m benchmarks.coverage [--only NAME ...] [--timeout 1500]

Per model (each stage in its own subprocess, so a crash or a timeout costs one cell). Stage
"structure", for every model first: build the prune space (a refusal names the unsupported module;
the model is then retried with every module of that type excluded, which is the documented way
through), check that the masked model equals the exported one within 1e-4 (relative to the largest
logit) on a random 50% candidate, and save + reload that export, comparing outputs bit for bit.
Stage "search", as far as time allows: one search step to 0.9 of the MACs with tiny probes
(8 images, 5 synthesis steps, 2 PGD steps, 4 trials), the searched model saved, reloaded, compared.
Cells land in results/coverage/cells/ as they finish (a rerun skips them); results/coverage.md is
rewritten from them after every cell. Randomness: seed 0 for weights, inputs and search.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
from torch import nn

from robustprune._provenance import provenance
from robustprune.spec import InputSpec

RESULTS = Path(__file__).resolve().parent.parent / "results"
CELLS = RESULTS / "coverage" / "cells"
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "num_classes": 1000}

#: the smallest variant of every torchvision classification family, at its native resolution
TORCHVISION = {
    "resnet18": 224,
    "resnext50_32x4d": 224,
    "wide_resnet50_2": 224,
    "mobilenet_v2": 224,
    "mobilenet_v3_small": 224,
    "efficientnet_b0": 224,
    "efficientnet_v2_s": 384,
    "regnet_y_400mf": 224,
    "regnet_x_400mf": 224,
    "convnext_tiny": 224,
    "densenet121": 224,
    "shufflenet_v2_x0_5": 224,
    "squeezenet1_1": 224,
    "mnasnet0_5": 224,
    "googlenet": 224,
    "inception_v3": 299,
    "vgg11_bn": 224,
    "alexnet": 224,
    "vit_b_16": 224,
    "swin_t": 224,
    "maxvit_t": 224,
}
#: popular timm architectures (small variants), created with pretrained=False
TIMM = {
    "resnet18": 224,
    "resnet50d": 224,
    "efficientnet_b0": 224,
    "mobilenetv3_large_100": 224,
    "convnext_atto": 224,
    "regnety_002": 224,
    "densenet121": 224,
    "ghostnet_100": 224,
    "rexnet_100": 224,
    "mixnet_s": 224,
    "vit_tiny_patch16_224": 224,
    "deit_tiny_patch16_224": 224,
    "swin_tiny_patch4_window7_224": 224,
}
#: run first: one of each structural kind (channel LayerNorm, attention, grouped convs, channel shuffle)
FIRST = [
    "torchvision:convnext_tiny",
    "timm:convnext_atto",
    "torchvision:vit_b_16",
    "timm:vit_tiny_patch16_224",
    "torchvision:efficientnet_b0",
    "torchvision:regnet_y_400mf",
    "torchvision:swin_t",
    "torchvision:shufflenet_v2_x0_5",
    "torchvision:resnext50_32x4d",
    "torchvision:googlenet",
    "torchvision:densenet121",
]
#: run last, heaviest last: on a contended 2-core machine these take the longest
HEAVY = [
    "torchvision:vit_b_16",
    "torchvision:swin_t",
    "torchvision:maxvit_t",
    "torchvision:densenet121",
    "timm:densenet121",
    "timm:swin_tiny_patch4_window7_224",
    "torchvision:resnext50_32x4d",
    "timm:resnet50d",
    "torchvision:inception_v3",
    "torchvision:vgg11_bn",
    "torchvision:efficientnet_v2_s",
    "torchvision:wide_resnet50_2",
]
STAGES = ("space", "masked_equals_export", "search_step", "reload_exact")


def build(suite: str, name: str) -> nn.Module:
    torch.manual_seed(0)
    if suite == "torchvision":
        import torchvision

        kwargs = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    else:
        import timm

        model = timm.create_model(name, pretrained=False)
    return randomize(model).eval()


def randomize(model: nn.Module) -> nn.Module:
    """Non-trivial norm statistics and affine parameters, and layer scales near 1 (their init is 1e-6,
    which would hide a masking error behind an identity block)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            for attr in ("weight", "bias", "running_mean", "running_var"):
                t = getattr(m, attr, None)
                if isinstance(m, nn.modules.batchnorm._BatchNorm | nn.LayerNorm | nn.GroupNorm) and t is not None:
                    low = 0.5 if attr in ("weight", "running_var") else -0.5
                    t.copy_(torch.rand(t.shape, generator=g) + low)
        for name, p in model.named_parameters():
            if re.search(r"(layer_scale|gamma|ls\d?\.)", name) and p.dim() <= 3:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
    return model


#: how many refusals a model may answer with exclusions (GhostNet needs 15, one per ghost module)
MAX_REFUSALS = 64


def exclusions_for(error: str, model: nn.Module) -> list[str]:
    """Every module of the type a refusal names (the documented way through), or [] if it names none."""
    match = re.search(r"module '([^']+)' \((\w+)\)", error) or re.search(r"exclude '([^']+)'", error)
    if not match:
        return []
    modules = dict(model.named_modules())
    named = match.group(1)
    if match.re.pattern.startswith("exclude"):  # a named group: the same module in every block
        pattern = re.compile(re.sub(r"\\.\d+\\.", r"\\.\\d+\\.", re.escape(named)) + "$")
        return [n for n in modules if pattern.match(n)] or [named]
    kind = type(modules[named]) if named in modules else None
    return [n for n, m in modules.items() if n and type(m) is kind] or [named]


def run_one(suite: str, name: str, resolution: int) -> dict:
    from robustprune.select import keep_top
    from robustprune.structure import PruneSpace, UnsupportedModelError, export, load_pruned, masked, save_pruned

    cell: dict = {"suite": suite, "model": name, "input": f"3x{resolution}x{resolution}"}
    model = build(suite, name)
    spec = InputSpec(shape=(3, resolution, resolution), **IMAGENET)
    exclude: list[str] = []
    t0 = time.time()
    while True:
        try:
            space = PruneSpace(model, spec, exclude=exclude)
            break
        except UnsupportedModelError as exc:
            more = [n for n in exclusions_for(str(exc), model) if n not in exclude]
            cell.setdefault("refusals", []).append(str(exc))
            if not more or len(cell["refusals"]) >= MAX_REFUSALS:
                cell["space"] = f"refused: {exc}"
                return cell
            exclude += more
        except ValueError as exc:  # nothing left to prune
            cell["space"] = f"nothing prunable: {exc}"
            return cell
    cell["space"] = "ok" if not exclude else f"ok with {len(exclude)} modules excluded"
    cell["exclude_types"] = sorted({type(dict(model.named_modules())[n]).__name__ for n in exclude})
    cell["groups"], cell["macs_g"] = len(space.groups), round(space.full_macs / 1e9, 3)
    cell["space_s"] = round(time.time() - t0, 1)

    g = torch.Generator().manual_seed(0)
    candidate = {
        grp.name: keep_top(torch.rand(grp.size, generator=g), grp.size // 2, grp.blocks) for grp in space.groups
    }
    x = torch.randn(2, *spec.shape, generator=g)
    try:
        with torch.no_grad(), masked(space, candidate):
            y_masked = model(x)
        pruned = export(space, candidate)
        with torch.no_grad():
            y_pruned = pruned(x)
        err = (y_masked - y_pruned).abs().max().item() / max(1.0, y_masked.abs().max().item())
        cell["masked_equals_export"] = "ok" if err <= 1e-4 else f"differs: {err:.2e}"
        macs, params = space.cost(candidate)
        cell["params_exact"] = params == sum(p.numel() for p in pruned.parameters())
    except Exception as exc:  # report, go on with the search
        cell["masked_equals_export"] = f"fails: {type(exc).__name__}: {str(exc)[:300]}"
        return cell

    try:
        with tempfile.TemporaryDirectory() as tmp:
            save_pruned(tmp, space, candidate, pruned)
            reloaded, _spec, _data = load_pruned(tmp, build=lambda: build(suite, name))
        with torch.no_grad():
            same = torch.equal(reloaded(x), pruned(x))
        cell["reload_exact"] = "ok" if same else "differs"
    except Exception as exc:
        cell["reload_exact"] = f"fails: {type(exc).__name__}: {str(exc)[:300]}"
    cell["exclude"] = exclude
    return cell


def run_search(suite: str, name: str, resolution: int, exclude: list[str]) -> dict:
    """One search step to 0.9 of the MACs with tiny probes; the searched model saved, reloaded, compared."""
    from robustprune.probes.probeset import ProbeConfig
    from robustprune.probes.synthetic import SyntheticConfig
    from robustprune.search.engine import SearchConfig, search
    from robustprune.structure import load_pruned, save_pruned

    cell: dict = {}
    model = build(suite, name)
    spec = InputSpec(shape=(3, resolution, resolution), **IMAGENET)
    probes = ProbeConfig(synthetic=SyntheticConfig(n=8, steps=5), attack_steps=2, n_undesired=8)
    config = SearchConfig(target_macs=0.9, steps=1, trials=4, probes=probes)
    t0 = time.time()
    try:
        result = search(model, spec, config=config, exclude=tuple(exclude), quiet=True)
        cell["search_step"] = f"ok, kept {result.history[-1].kept_macs:.3f} MACs" if result.history else "no step"
    except Exception as exc:
        cell["search_step"] = f"fails: {type(exc).__name__}: {str(exc)[:300]}"
        cell["search_trace"] = traceback.format_exc(limit=-3)
        return cell
    finally:
        cell["search_s"] = round(time.time() - t0, 1)
    x = torch.randn(2, *spec.shape, generator=torch.Generator().manual_seed(0))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            save_pruned(tmp, result.space, result.candidate, result.model)
            reloaded, _spec, _data = load_pruned(tmp, build=lambda: build(suite, name))
        with torch.no_grad():
            same = torch.equal(reloaded(x), result.model.eval()(x))
        cell["searched_reload_exact"] = "ok" if same else "differs"
    except Exception as exc:
        cell["searched_reload_exact"] = f"fails: {type(exc).__name__}: {str(exc)[:300]}"
    return cell


def cell_path(suite: str, name: str, stage: str = "structure") -> Path:
    return CELLS / (f"{suite}__{name}.json" if stage == "structure" else f"{suite}__{name}__{stage}.json")


def render() -> None:
    prov = provenance()
    lines = [
        "# Coverage: torchvision and timm classifiers",
        "",
        "Random weights (seed 0; norm statistics and layer scales randomized so masking errors cannot hide), "
        "native input shape, ImageNet normalization, 1000 classes. Per model: does the prune space build "
        "(a refusal is retried with every module of the refused type excluded, as the message advises); is "
        "the masked model equal to the exported one within 1e-4 on a random 50% candidate (and do the space's "
        "parameter counts match the exported model); does one search step to 0.9 of the MACs run with tiny "
        "probes (8 images, 5 synthesis steps, 2 PGD steps, 4 trials); is the saved + reloaded model bit-exact.",
        "",
        f"Command: `nice -n 10 python -m benchmarks.coverage`; commit `{prov['commit']}`; machine "
        f"{prov['machine']}; torch {prov['torch']}; cells in results/coverage/cells/ (each states its own run).",
        "",
    ]
    for suite, models in (("torchvision", TORCHVISION), ("timm", TIMM)):
        lines += [
            f"## {suite}",
            "",
            "| model | input | space | groups | GMACs | masked = exported | params exact | reload exact | "
            "search step (s) | searched model reload exact |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name in models:
            path = cell_path(suite, name)
            if not path.exists():
                lines.append(f"| {name} | | not run yet | | | | | | | |")
                continue
            c = json.loads(path.read_text())
            searched = cell_path(suite, name, "search")
            if searched.exists():
                c.update(json.loads(searched.read_text()))
            elif "search_step" not in c:
                c["search_step"] = "not run" if c.get("reload_exact") else ""
            search_cell = c.get("search_step", "")
            if "search_s" in c:
                search_cell += f" ({c['search_s']:.0f} s)"
            row = [
                name,
                c.get("input", ""),
                _short(c.get("space", "")),
                str(c.get("groups", "")),
                str(c.get("macs_g", "")),
                _short(c.get("masked_equals_export", "")),
                str(c.get("params_exact", "")),
                _short(c.get("reload_exact", "")),
                _short(search_cell),
                _short(c.get("searched_reload_exact", "")),
            ]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    (RESULTS / "coverage.md").write_text("\n".join(lines) + _notes())


def _short(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")[:220]


def _notes() -> str:
    notes = RESULTS / "coverage" / "notes.md"
    return "\n" + notes.read_text() if notes.exists() else ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="suite:name cells to run (default: all)")
    parser.add_argument("--timeout", type=int, default=1500, help="seconds per model and stage")
    parser.add_argument("--stages", nargs="+", default=["structure", "search"], choices=["structure", "search"])
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # stage:suite:name, run in this process
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.cell:
        stage, suite, name = args.cell.split(":", 2)
        resolution = (TORCHVISION if suite == "torchvision" else TIMM)[name]
        if stage == "structure":
            cell = run_one(suite, name, resolution)
        else:
            structure = json.loads(cell_path(suite, name).read_text())
            cell = run_search(suite, name, resolution, structure.get("exclude", []))
        cell.update(provenance())
        cell["command"] = f"python -m benchmarks.coverage --cell {args.cell}"
        CELLS.mkdir(parents=True, exist_ok=True)
        cell_path(suite, name, stage).write_text(json.dumps(cell, indent=1, default=str))
        return
    todo = [f"torchvision:{n}" for n in TORCHVISION] + [f"timm:{n}" for n in TIMM]
    todo.sort(key=lambda ref: HEAVY.index(ref) if ref in HEAVY else -1)  # light models first (stable)
    todo.sort(key=lambda ref: FIRST.index(ref) if ref in FIRST else len(FIRST))
    if args.only:
        todo = [t for t in todo if t in args.only or t.split(":", 1)[1] in args.only]
    for stage in args.stages:  # every model's structure first: the search step is what costs
        for ref in todo:
            suite, name = ref.split(":", 1)
            path = cell_path(suite, name, stage)
            if path.exists():
                continue
            if stage == "search":
                structure = cell_path(suite, name)
                if not structure.exists() or json.loads(structure.read_text()).get("reload_exact") != "ok":
                    continue  # nothing to search: the space or the export already failed
                if "search_step" in json.loads(structure.read_text()):
                    continue  # an earlier run of this script searched in the same cell
            start = time.time()
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.coverage",
                "--cell",
                f"{stage}:{ref}",
                "--threads",
                str(args.threads),
            ]
            failure = None
            try:
                proc = subprocess.run(cmd, timeout=args.timeout, capture_output=True, text=True)
                if proc.returncode and not path.exists():
                    failure = "crashed: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
            except subprocess.TimeoutExpired:
                failure = f"timed out after {args.timeout} s"
            if failure:
                CELLS.mkdir(parents=True, exist_ok=True)
                key = "space" if stage == "structure" else "search_step"
                path.write_text(json.dumps({"suite": suite, "model": name, key: failure}))
            print(f"{stage} {ref}: {time.time() - start:.0f} s", flush=True)
            render()
    render()


if __name__ == "__main__":
    main()
