"""Does a validation cell's model come out the same when pruned again on this host? (results/host_repro.md)

    python -m benchmarks.host_repro [--methods taylor_l1_uniform+bn ...] [--threads 1] [--root DIR]

For each finished cell of the validation ablation (results/ablation_val/cells) whose method is one of
``--methods`` (default: the one-shot baselines, seconds each), prune it again with the same seed and
settings on this host and compare the new model's clean predictions on the validation images with those
the cell recorded: how many of the 5,000 differ, and validation top-1 then and now. Pruning is
deterministic on one machine; two hosts whose CPUs take other vector kernels round differently, and a
ranking of near-tied channels (Taylor scores, BN statistics of synthetic inputs) can then flip.
Which host an earlier cell ran on is not recorded (provenance named no CPU before commit 7575f9b), so
cells are grouped by the commit they ran at.

Where ``--root`` holds the run's saved models (``<root>/models``, not in git), each is also checked
against its cell: its clean predictions the same exactly, or only up to rounding ties
(robustprune.bench.reproduces_row), the check results/PROTOCOL.md rules 6 and 7 use.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks._common import RESULTS, produced_by, start
from robustprune import zoo
from robustprune._io import atomic_write_text
from robustprune._provenance import short_commit
from robustprune.bench import load_suite, prune_cell, reproduces_row
from robustprune.data.fashion_mnist import load_eval_split
from robustprune.evaluate.attacks import robust_correct
from robustprune.evaluate.paired import unpack
from robustprune.structure.persist import load_pruned

BASELINES = ("taylor_l1_uniform+bn", "l1_uniform+bn", "global_magnitude+bn", "paoding")


def compare_cell(suite, row: dict, images) -> dict:
    """The cell pruned again here against its row: differing clean predictions and top-1 then and now."""
    cell = (row["model"], row["method"], row["target"], row["seed"])
    zoo_model = zoo.load(row["model"])
    pruned, *_ = prune_cell(suite, *cell, zoo_model=zoo_model)
    now = robust_correct(pruned, zoo_model[1], *images, attack=None)
    then = unpack(row["per_image"]["clean"])
    prov = row["report"]["provenance"]
    return {
        "cell": "__".join(map(str, cell)),
        "commit": short_commit(prov["commit"]),
        "differ": int((now != then).sum()),
        "then": 100 * then.float().mean().item(),
        "now": 100 * now.float().mean().item(),
    }


def saved_lines(root: Path, images) -> list[str]:
    """How many saved models make their cell's clean predictions exactly, and how many only up to ties."""
    exact, tied, differ = [], [], []
    for folder in sorted((root / "models").glob("*__s*")):
        cell = root / "cells" / f"{folder.name}.json"
        if not cell.is_file():
            continue
        row = json.loads(cell.read_text())
        model, _, _ = load_pruned(folder)
        spec = zoo.load(row["model"])[1]
        same = bool((robust_correct(model, spec, *images, attack=None) == unpack(row["per_image"]["clean"])).all())
        (exact if same else tied if reproduces_row(model, spec, row, images) else differ).append(folder.name)
    if not exact + tied + differ:
        return []
    return [
        "",
        f"Saved models ({root / 'models'}): {len(exact)} make their cell's clean predictions exactly, "
        f"{len(tied)} only up to rounding ties, {len(differ)} differ{': ' + ', '.join(differ) if differ else ''}.",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(BASELINES))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the ablation's cells used 1)")
    parser.add_argument("--root", default=str(RESULTS / "ablation_val"), help="the validation run's folder")
    args = parser.parse_args(argv)
    suite = load_suite("ablation_val")
    unknown = sorted(set(args.methods) - set(suite.methods))
    if unknown:
        parser.error(f"--methods: suite ablation_val has no method {', '.join(unknown)}")
    root = Path(args.root)
    rows = [json.loads(p.read_text()) for p in sorted((root / "cells").glob("*__s*.json"))]
    rows = [r for r in rows if r["method"] in args.methods]
    if not rows:
        parser.error(f"no finished cells of {', '.join(args.methods)} in {root / 'cells'}")
    command = start("host_repro", argv, threads=args.threads)
    images = load_eval_split("val")
    found = []
    for i, row in enumerate(rows, 1):
        found.append(compare_cell(suite, row, images))
        print(f"[{i}/{len(rows)}] {found[-1]}", flush=True)
    same = [f for f in found if f["differ"] == 0]
    lines = [
        "# Pruning again on this host: the same model?",
        "",
        f"{len(same)} of {len(found)} cells ({', '.join(args.methods)}) come out with the same clean predictions "
        "on the 5,000 validation images. By the commit the cell ran at:",
        "",
        "| commit | cells | same | differing predictions (of 5,000) | top-1 change, points (now - then) |",
        "|---|---|---|---|---|",
    ]
    for commit in sorted({f["commit"] for f in found}):
        group = [f for f in found if f["commit"] == commit]
        differ = [f["differ"] for f in group]
        change = [f["now"] - f["then"] for f in group]
        lines.append(
            f"| `{commit}` | {len(group)} | {sum(d == 0 for d in differ)} | {min(differ)} to {max(differ)} "
            f"| {min(change):+.2f} to {max(change):+.2f} |"
        )
    lines += ["", "| cell | ran at | differ | top-1 then -> now |", "|---|---|---|---|"]
    lines += [f"| {f['cell']} | `{f['commit']}` | {f['differ']} | {f['then']:.2f} -> {f['now']:.2f} |" for f in found]
    lines += saved_lines(root, images)
    lines += ["", produced_by(command) + ".", ""]
    atomic_write_text(RESULTS / "host_repro.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
