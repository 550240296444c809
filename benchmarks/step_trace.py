"""Trace a search step by step: each committed step's objective (what the search maximizes) beside the
validation accuracy of the model it committed. Where the objective rises while accuracy falls, the proxies
are fooled; that is what ``SearchConfig.split_probes`` is meant to stop.

    python -m benchmarks.step_trace --model vgg11_bn --target 0.3 --seed 0 --configs default split_probes

Validation split only (train[55000:], results/PROTOCOL.md). Writes results/step_trace/<model>_<target>_s<seed>.md
(one table per configuration; a rerun replaces the file).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from benchmarks._common import RESULTS, produced_by, split, start
from robustprune import zoo
from robustprune._io import atomic_write_text
from robustprune.search import SearchConfig
from robustprune.search.progressive import ProgressiveSearch

#: configuration name -> SearchConfig fields changed from the default
CONFIGS = {"default": {}, "split_probes": {"split_probes": True}, "rescore_off": {"rescore": "off"}}


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, spec) -> float:
    """Top-1 accuracy (%) on normalized ``x``."""
    with torch.no_grad():
        batches = zip(x.split(1000), y.split(1000), strict=True)
        right = sum((model(spec.normalize(xb)).argmax(1) == yb).sum().item() for xb, yb in batches)
    return 100 * right / len(y)


def trace(model_name: str, target: float, seed: int, changes: dict) -> tuple[list[dict], dict]:
    """Run the search and measure each committed step (a ``callbacks`` hook: it runs before the next rescoring)."""
    model, spec = zoo.load(model_name)
    x, y, *_ = split("val")
    kind = "target_params" if model_name == "mlp" else "target_macs"
    config = dataclasses.replace(SearchConfig(**{kind: target}, seed=seed), **changes)
    rows = []

    def measure(record) -> None:
        _, pruned = run._export()  # the committed candidate, as the search would return it now
        kept = record.kept_params if kind == "target_params" else record.kept_macs
        val = accuracy(pruned.eval(), x, y, spec)
        rows.append(
            {
                "step": record.step,
                "kept": kept,
                "objective": record.score,
                "fidelity": record.proxies["fidelity"],
                "val": val,
            }
        )

    start_time = time.time()
    with ProgressiveSearch(model, spec, config, quiet=True, callbacks=[measure]) as run:
        run.resume()
        chosen = {"importance": run.config.importance, "rescore": run.config.rescore}
    chosen["seconds"] = time.time() - start_time
    return rows, chosen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, choices=zoo.names())
    parser.add_argument("--target", type=float, required=True, help="fraction of MACs (params for the mlp) to keep")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["default", "split_probes"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    command = start("step_trace", argv, threads=args.threads)
    cost = "params" if args.model == "mlp" else "MACs"
    lines = [
        f"# Step trace: {args.model} to {args.target:g} of its {cost}, seed {args.seed}",
        "",
        f"{produced_by(command, seed=args.seed, threads=args.threads)}. Validation split train[55000:] "
        "(5,000 images; the test set is not used). Per committed step: the kept fraction, the search's objective "
        "(higher is better) and fidelity on its probes, and the committed model's validation clean accuracy.",
        "",
    ]
    for name in args.configs:
        rows, chosen = trace(args.model, args.target, args.seed, CONFIGS[name])
        lines += [
            f"## {name} ({', '.join(f'{k} {v}' for k, v in CONFIGS[name].items()) or 'the defaults'})",
            "",
            f"Criterion {chosen['importance']}, rescore {chosen['rescore']}; {chosen['seconds']:.0f} s.",
            "",
            "| step | kept | objective | fidelity | val clean % |",
            "|---|---|---|---|---|",
            *(
                f"| {r['step']} | {r['kept']:.3f} | {r['objective']:.4f} | {r['fidelity']:.3f} | {r['val']:.2f} |"
                for r in rows
            ),
            "",
        ]
        print(f"{name}: " + ", ".join(f"{r['val']:.2f}" for r in rows), flush=True)
    out = RESULTS / "step_trace" / f"{args.model}_{args.target:g}_s{args.seed}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
