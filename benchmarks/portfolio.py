"""Would "progressive or one-shot, whichever held-out probes prefer" beat both? (issue 15's decision)

    python -m benchmarks.portfolio [--root results/ablation_val] [--rivals oneshot_search]

For every (model, target, seed) of the validation ablation where the ``search`` cell and each rival's
cell kept their pruned model (``<root>/models``; models are not in git, so only cells run on this
machine count), both models are scored by the search's objective on held-out probes: synthetic
inputs inverted from the original with seed + 1000, their adversarial and undesired probes
(robustprune.search.held_out). The "portfolio" keeps the higher-scoring model, so its validation
cell is the kept model's own cell: no new evaluation. A saved model is used only if it reproduces its
cell's clean predictions on the validation images (up to rounding ties). Each pick is saved under
results/portfolio_val/cells (a rerun skips it), then results/portfolio_val.md gives every pick and
the portfolio against ``search`` and against each rival on clean and PGD, paired over seeds and
images (robustprune.evaluate.stats.compare), per model and target and pooled.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks._common import RESULTS, start
from robustprune import zoo
from robustprune._io import atomic_write_json, atomic_write_text
from robustprune._provenance import provenance
from robustprune.bench import cell_id, load_suite, reproduces_row
from robustprune.data.fashion_mnist import load_eval_split
from robustprune.evaluate.paired import unpack
from robustprune.evaluate.stats import compare
from robustprune.search.held_out import HELD_OUT_SEED_OFFSET, held_out_probes, held_out_score
from robustprune.structure.persist import load_pruned

OUT = RESULTS / "portfolio_val"


def _checked_model(root: Path, name: str, spec, images):
    """The saved model of cell ``name`` if it reproduces the cell's clean predictions, else None."""
    folder, cell = root / "models" / name, root / "cells" / f"{name}.json"
    if not (folder / "pruned.pt").is_file() or not cell.is_file():
        return None
    model, _, _ = load_pruned(folder)
    return model if reproduces_row(model, spec, json.loads(cell.read_text()), images) else None


def pick(root: Path, suite, model_name: str, target: float, seed: int, methods: list[str], images) -> dict | None:
    """Held-out scores of the cell's models and the one kept; None if a model is missing or mismatched."""
    path = OUT / "cells" / f"{model_name}__{target:g}__s{seed}__{'+'.join(methods)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    original, spec = zoo.load(model_name)
    models = {m: _checked_model(root, cell_id(model_name, m, target, seed), spec, images) for m in methods}
    if any(m is None for m in models.values()):
        return None
    config = suite.search_config(suite.models[model_name], target, seed).probe_config
    probes = held_out_probes(original, spec, config, seed)
    scores = {m: held_out_score(model, probes) for m, model in models.items()}
    kept = max(methods, key=lambda m: (scores[m][0], -methods.index(m)))
    result = {
        "model": model_name,
        "target": target,
        "seed": seed,
        "held_out_seed": seed + HELD_OUT_SEED_OFFSET,
        "scores": {m: s for m, (s, _) in scores.items()},
        "proxies": {m: p for m, (_, p) in scores.items()},
        "kept": kept,
        "provenance": provenance(seed=seed),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, result)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(RESULTS / "ablation_val"), help="the validation ablation's folder")
    parser.add_argument("--rivals", nargs="+", default=["oneshot_search"], help="methods the search competes with")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    command = start("portfolio", argv, args.threads)
    root, suite = Path(args.root), load_suite("ablation_val")
    methods = ["search", *args.rivals]
    images = load_eval_split(suite.paired["split"])
    picks = []
    for model_name, _method, target, seed in suite.cells():
        if _method != "search":
            continue
        result = pick(root, suite, model_name, target, seed, methods, images)
        if result is not None:
            picks.append(result)
            print(f"{model_name} {target:g} s{seed}: kept {result['kept']} {result['scores']}", flush=True)
    atomic_write_text(RESULTS / "portfolio_val.md", markdown(picks, root, methods, command))
    print(f"wrote {RESULTS / 'portfolio_val.md'}")


def markdown(picks: list[dict], root: Path, methods: list[str], command: str) -> str:
    cells = root / "cells"

    def row(model_name, method, target, seed) -> dict:
        return json.loads((cells / f"{cell_id(model_name, method, target, seed)}.json").read_text())

    info = provenance()
    lines = [
        "# Portfolio: progressive search or one-shot search, chosen on held-out probes (validation)",
        "",
        f"Produced by `{command}` at commit `{info['commit']}` on {info['machine']}, torch {info['torch']}. "
        "Decision evidence on the validation split only (results/PROTOCOL.md). Each row: the held-out "
        "objective of each model (higher is kept) and the validation clean / PGD accuracy of its cell; the "
        "portfolio's accuracy is the kept model's.",
        "",
        "| model | target | seed | "
        + " | ".join(f"{m} score" for m in methods)
        + " | kept | "
        + " | ".join(f"{m} clean / PGD" for m in methods)
        + " | right pick (clean) |",
        "|---|---|---|" + "---|" * (2 * len(methods) + 2),
    ]
    by_cell = defaultdict(list)
    for p in sorted(picks, key=lambda p: (p["model"], -p["target"], p["seed"])):
        rows = {m: row(p["model"], m, p["target"], p["seed"]) for m in methods}
        acc = {
            m: (100 * r["report"]["clean_accuracy"], 100 * r["report"]["robust_accuracy"]["pgd"])
            for m, r in rows.items()
        }
        best = max(acc[m][0] for m in methods)
        right = "yes" if acc[p["kept"]][0] == best else f"no ({acc[p['kept']][0] - best:+.2f})"
        lines.append(
            f"| {p['model']} | {p['target']:g} | {p['seed']} | "
            + " | ".join(f"{p['scores'][m]:+.4f}" for m in methods)
            + f" | {p['kept']} | "
            + " | ".join(f"{acc[m][0]:.2f} / {acc[m][1]:.2f}" for m in methods)
            + f" | {right} |"
        )
        by_cell[(p["model"], p["target"])].append((p, rows))
    lines += [
        "",
        "Portfolio minus each method, paired over the seeds and images both have (bootstrap 95% interval):",
        "",
    ]
    lines += ["| model | target | seeds | metric | " + " | ".join(f"vs {m}" for m in methods) + " |"]
    lines += ["|---|---|---|---|" + "---|" * len(methods)]
    groups = sorted(by_cell.items(), key=lambda kv: (kv[0][0], -kv[0][1])) + [
        (("all", "pooled"), sum(by_cell.values(), []))
    ]
    for (model_name, target), items in groups:
        if model_name == "all" and len(by_cell) < 2:
            continue
        for metric in ("clean", "pgd"):
            kept = _stack([rows[p["kept"]] for p, rows in items], metric)
            cells_text = []
            for m in methods:
                other = _stack([rows[m] for _, rows in items], metric)
                c = compare(kept, other) if kept.shape == other.shape else None
                cells_text.append(f"{c.difference:+.2f} [{c.low:+.2f}, {c.high:+.2f}] {c.verdict}" if c else "-")
            lines.append(
                f"| {model_name} | {target if isinstance(target, str) else f'{target:g}'} | {len(items)} | "
                f"{metric} | " + " | ".join(cells_text) + " |"
            )
    lines += ["", f"{len(picks)} (model, target, seed) cells had every model saved and matching its cell.", ""]
    if methods == ["search", "oneshot_search"]:
        lines += rule_7(picks, root)
    return "\n".join(lines)


#: the grid rule 7 decides on: 7 zoo models x 2 targets x 3 seeds
RULE_7_CELLS = 42


def rule_7(picks: list[dict], root: Path) -> list[str]:
    """results/PROTOCOL.md rule 7 applied mechanically: which search is the default, on the cells in so far."""
    cells = root / "cells"
    picks = sorted(picks, key=lambda p: (p["model"], -p["target"], p["seed"]))  # the pooled table's order
    rows = {p.stem: json.loads(p.read_text()) for p in cells.glob("*__s*.json")}
    rows = {k: r for k, r in rows.items() if r.get("suite_settings", {}).get("eval", {}).get("split") == "val"}
    grid = {(m, t, s) for m, method, t, s in load_suite("ablation_val").cells() if method == "search"}
    keys = sorted(
        grid  # only the rule's grid: a folder with other models, targets or splits adds nothing
        & {(r["model"], r["target"], r["seed"]) for r in rows.values() if r["method"] == "search"}
        & {(r["model"], r["target"], r["seed"]) for r in rows.values() if r["method"] == "oneshot_search"}
    )
    picks = [p for p in picks if (p["model"], p["target"], p["seed"]) in grid]

    def cell(model_name, method, target, seed) -> dict:
        return rows[cell_id(model_name, method, target, seed)]

    search_all = [cell(m, "search", t, s) for m, t, s in keys]
    oneshot_all = [cell(m, "oneshot_search", t, s) for m, t, s in keys]
    kept = [cell(p["model"], p["kept"], p["target"], p["seed"]) for p in picks]
    search_p = [cell(p["model"], "search", p["target"], p["seed"]) for p in picks]
    oneshot_p = [cell(p["model"], "oneshot_search", p["target"], p["seed"]) for p in picks]
    duels = {
        ("oneshot_search", "search"): (oneshot_all, search_all),
        ("portfolio", "search"): (kept, search_p),
        ("portfolio", "oneshot_search"): (kept, oneshot_p),
    }
    beats, lines = {}, []
    for (x, y), (a, b) in duels.items():
        if not a:
            beats[(x, y)] = False
            lines.append(f"| {x} vs {y} | 0 | - | - | no cells |")
            continue
        clean, pgd = compare(_stack(a, "clean"), _stack(b, "clean")), compare(_stack(a, "pgd"), _stack(b, "pgd"))
        beats[(x, y)] = clean.verdict == "win" and pgd.verdict != "loss"
        lines.append(
            f"| {x} vs {y} | {len(a)} | {clean.difference:+.2f} [{clean.low:+.2f}, {clean.high:+.2f}] | "
            f"{pgd.difference:+.2f} [{pgd.low:+.2f}, {pgd.high:+.2f}] | {'yes' if beats[(x, y)] else 'no'} |"
        )
    default = decide(beats)
    complete = len(keys) >= RULE_7_CELLS
    return [
        "## Rule 7: which search is the default",
        "",
        "results/PROTOCOL.md rule 7, applied to the cells in so far: X beats Y where the pooled clean "
        "difference X - Y excludes zero in X's favour and the pooled PGD difference does not exclude zero "
        "against X (bootstrap over (model, target, seed) cells and images). `oneshot_search` vs `search` uses "
        "every cell both have; the portfolio only the cells above.",
        "",
        "| comparison | cells | clean X - Y | PGD X - Y | X beats Y |",
        "|---|---|---|---|---|",
        *lines,
        "",
        f"Outcome on {len(keys)} of {RULE_7_CELLS} (model, target, seed) cells, the portfolio on {len(picks)} of "
        f"them: **{default}**" + ("." if complete else " (provisional: the rule decides once every cell is in)."),
        "",
    ]


def decide(beats: dict[tuple[str, str], bool]) -> str:
    """Rule 7's default from which candidate beats which (keys (X, Y): X beats Y)."""
    one = beats[("oneshot_search", "search")]
    port_search, port_one = beats[("portfolio", "search")], beats[("portfolio", "oneshot_search")]
    if port_search and port_one:
        return "portfolio"
    if one and not port_one:
        return "oneshot_search"
    if port_search and not one:
        return "portfolio"
    if one:  # the portfolio beats the one-shot search, which beats the search, but not the search itself
        return "undecided: the rule does not cover this case (a change to it is a commit of its own)"
    return "search"


def _stack(rows: list[dict], metric: str) -> np.ndarray:
    """(cells, images) correctness; the pooled row treats each (model, target, seed) as one 'seed'."""
    return np.stack([unpack(r["per_image"][metric]).numpy() for r in rows]).astype(float)


if __name__ == "__main__":
    main()
