"""Issue 15's ablation: does the Optuna allocation earn its keep? Writes results/ablation[_val].md.

    python -m benchmarks.ablation --split val      # the decision run: robustprune/suites/ablation_val.json
    python -m benchmarks.ablation --split test --pruned-from results/ablation_val   # the claim, once, after
                                   # the decision (results/PROTOCOL.md), on the decision run's saved models
    python -m benchmarks.ablation --split val --summarize-only   # the table from the finished cells
    python -m benchmarks.ablation --split val --seeds 1 --models mlp cnn   # only some cells
    python -m benchmarks.ablation --split val --save-missing-models   # keep the models of cells run before
                                   # models/ existed (each only if it reproduces its cell's predictions)

Runners started together on one split share its cells: each skips the cells another one holds.

Runs the suite's missing cells through the bench runner into results/ablation[_val]/ (resumable:
finished cells are kept in cells/ and a rerun skips them), then writes the table: per (model,
target, method) the mean and 95% t-interval over seeds of clean, PGD and APGD accuracy on fixed
images, corruption accuracy and OOD AUROC, kept MACs/params; and, per (model, target), the paired
comparison of ``search`` against ``progressive_uniform``, ``oneshot_search``, ``search_random`` and
the best one-shot baseline (by mean clean accuracy of the validation run's cells): accuracy difference
with a bootstrap interval over seeds and images and its verdict (win / tie / loss), beside it the
seed-level t-interval and its verdict, and the per-seed differences. A second glance table counts a win
or a loss only where both rules agree and no pooled bound is at the Monte Carlo boundary
(results/PROTOCOL.md, amendment 9).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from benchmarks._common import RESULTS, start
from robustprune import zoo
from robustprune._io import atomic_write_json, atomic_write_text
from robustprune._provenance import provenance
from robustprune.bench import Suite, cell_id, load_suite, run_suite, save_missing_models
from robustprune.bench_tables import cell_sources
from robustprune.evaluate.harness import EvalSettings, evaluate
from robustprune.evaluate.paired import PairedSettings, correctness, pack, unpack
from robustprune.evaluate.stats import compare, mean_ci, paired_seed_interval
from robustprune.search import SEARCH_VARIANTS

METRICS = ("clean", "pgd", "apgd")
OOD_SETS = ("digits", "flipped", "noise")
RIVALS = ("progressive_uniform", "oneshot_search", "search_random")
ORIGINAL = "original (unpruned)"


def _seed_metrics(row: dict) -> dict[str, float]:
    """The report's per-cell numbers that have no per-image vector: corruption accuracy and OOD AUROC."""
    report = row["report"]
    return {"corruption": report["corruption_accuracy"], **{f"auroc {n}": report["ood_auroc"][n] for n in OOD_SETS}}


def _per_image(rows: list[dict], metric: str) -> np.ndarray | None:
    """(seeds, images) correctness of one method's cells, rows sorted by seed; None if a cell lacks it."""
    vectors = [row.get("per_image", {}).get(metric) for row in sorted(rows, key=lambda r: r.get("seed", 0))]
    if not vectors or any(v is None for v in vectors):
        return None
    return np.stack([unpack(v).numpy() for v in vectors]).astype(float)


def _cell_line(method: str, rows: list[dict], original: dict | None = None) -> str:
    def stat(values) -> str:
        mean, half = mean_ci([100 * v for v in values])
        return f"{mean:.2f} ± {half:.2f}"

    params = [r["kept_params"] for r in rows if "kept_params" in r]
    kept_params = f"{100 * np.mean(params):.1f}" if len(params) == len(rows) else "-"
    parts = [method, f"{100 * np.mean([r['kept_macs'] for r in rows]):.1f}", kept_params]
    for metric in METRICS:
        correct = _per_image(rows, metric)
        parts.append(stat(correct.mean(axis=1)) if correct is not None else "-")
        if metric == "clean":  # points lost against the unpruned model on the same images
            before = _per_image([original], metric) if original is not None else None
            lost = before.mean() - correct.mean() if before is not None and correct is not None else None
            parts.append(f"{100 * lost:.2f}" if lost is not None else "-")
    report = [r["report"] for r in rows]
    parts.append(stat([r["corruption_accuracy"] for r in report]))
    for name in OOD_SETS:
        parts.append(stat([r["ood_auroc"][name] for r in report]))
    return "| " + " | ".join(parts) + " |"


def _best_baseline(by_method: dict[str, list[dict]]) -> str | None:
    """The one-shot baseline with the highest mean clean accuracy among these cells."""
    baselines = [m for m in by_method if m not in SEARCH_VARIANTS]
    if not baselines:
        return None
    return max(baselines, key=lambda m: np.mean([r["report"]["clean_accuracy"] for r in by_method[m]]))


def _groups(rows: list[dict]) -> dict[tuple[str, float], dict[str, list[dict]]]:
    """Cells by (model, target), then by method."""
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        groups[(row["model"], row["target"])][row["method"]].append(row)
    return groups


def best_baselines(rows: list[dict]) -> dict[tuple[str, float], str]:
    """Per (model, target), the best one-shot baseline of these cells: the validation run's choice, which the
    test table reuses (results/PROTOCOL.md, amendment 9)."""
    chosen = {key: _best_baseline(by_method) for key, by_method in _groups(rows).items()}
    return {key: best for key, best in chosen.items() if best is not None}


def _comparisons(
    by_method: dict[str, list[dict]], n_resamples: int, best: str | None = None
) -> list[tuple[str, str, list[str], list]]:
    """Search against each rival: (rival key, row label, cell texts, comparisons or None per metric: clean, PGD and
    APGD over seeds and images, then corruption and each OOD AUROC over seeds).
    ``best``: the best baseline chosen elsewhere (the validation run); None chooses it among these cells."""
    if "search" not in by_method:
        return []
    best = best if best is not None else _best_baseline(by_method)
    if best is not None and best not in by_method:
        raise SystemExit(f"the best baseline {best} chosen on validation has no cells here")
    rivals = [m for m in RIVALS if m in by_method] + ([best] if best else [])
    out = []
    for rival in rivals:
        key = "best baseline" if rival == best else rival
        label = f"best baseline ({rival})" if rival == best else rival
        # paired on the seeds both have finished (a partial run may have more seeds of one method)
        shared = {r["seed"] for r in by_method["search"]} & {r["seed"] for r in by_method[rival]}
        mine = [r for r in by_method["search"] if r["seed"] in shared]
        theirs = [r for r in by_method[rival] if r["seed"] in shared]
        if len(shared) < max(len(by_method["search"]), len(by_method[rival])):
            label += f" (seeds {', '.join(map(str, sorted(shared)))} only)"
        cells, verdicts = [], []
        for metric in METRICS:
            a, b = _per_image(mine, metric), _per_image(theirs, metric)
            if a is None or b is None or a.shape != b.shape:
                cells.append("-")
                verdicts.append(None)
                continue
            result = compare(a, b, n_resamples=n_resamples)
            cells.append(result.describe(with_p=True, both_rules=True))
            verdicts.append(result)
        # corruption and OOD AUROC are one number per cell: paired over seeds only (a t-interval)
        seeds = sorted(shared)
        mine_by_seed = {r["seed"]: _seed_metrics(r) for r in mine}
        theirs_by_seed = {r["seed"]: _seed_metrics(r) for r in theirs}
        for metric in ("corruption", *(f"auroc {n}" for n in OOD_SETS)):
            a = [100 * mine_by_seed[s][metric] for s in seeds]
            b = [100 * theirs_by_seed[s][metric] for s in seeds]
            seed_level = paired_seed_interval(a, b)
            cells.append(seed_level.describe())
            verdicts.append(seed_level)
        out.append((key, label, cells, verdicts))
    return out


def comparisons(by_method: dict[str, list[dict]], n_resamples: int = 10_000, best: str | None = None) -> list[str]:
    """Table rows: search against each rival on each metric, paired over seeds and images."""
    return [_comparison_line(label, cells) for _key, label, cells, _ in _comparisons(by_method, n_resamples, best)]


def _comparison_line(label: str, cells: list[str]) -> str:
    return f"| search vs {label} | " + " | ".join(cells) + " |"


def ablation_markdown(
    rows: list[dict],
    suite_name: str,
    originals: dict[str, dict] | None = None,
    n_resamples: int = 10_000,
    chosen: dict[tuple[str, float], str] | None = None,
) -> str:
    """The whole results file's tables from the finished cells (``originals``: each model's unpruned row;
    ``chosen``: the best baseline per (model, target) chosen on validation; None chooses it on these cells)."""
    originals = originals or {}
    groups = _groups(rows)
    out = []
    glance = []
    tallies = []
    for (model, target), by_method in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        kind = next(iter(by_method.values()))[0]["target_kind"]
        original = originals.get(model)
        out += [f"## {model} at {target:g} of {kind}", ""]
        out += [
            "| method | kept MACs % | kept params % | clean | clean lost | PGD | APGD | corruption "
            "| AUROC digits | AUROC flipped | AUROC noise |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        if original is not None:
            out.append(_cell_line(ORIGINAL, [{**original, "kept_macs": 1.0, "kept_params": 1.0}], original))
        out += [_cell_line(method, by_method[method], original) for method in sorted(by_method)]
        if chosen is not None and "search" in by_method and (model, target) not in chosen:
            raise SystemExit(f"no best baseline chosen on validation for {model} at {target:g}")
        compared = _comparisons(by_method, n_resamples, (chosen or {}).get((model, target)))
        if compared:
            out += [
                "",
                "Paired differences, points (A - B), verdict. Clean, PGD, APGD: 95% bootstrap interval over "
                "seeds and images and its verdict (marked where a bound is within 0.1 points of zero, the "
                "bootstrap's Monte Carlo boundary), then `seeds`: the 95% t-interval of the per-seed differences "
                "and its verdict, then per seed the difference and McNemar's exact p. Corruption and AUROC (one "
                "number per cell): 95% t-interval of the per-seed differences.",
                "",
                "| comparison | clean | PGD | APGD | corruption | AUROC digits | AUROC flipped | AUROC noise |",
                "|---|---|---|---|---|---|---|---|",
                *(_comparison_line(label, cells) for _key, label, cells, _ in compared),
            ]
            glance.append((model, target, kind, by_method, compared))
            tallies.append(compared)
        out.append("")
    best_rule = (
        "the one the validation run chose (results/ablation_val.md; PROTOCOL amendment 9), not one chosen on "
        "this table's images"
        if chosen is not None
        else "chosen on this table's own images, which can only favour the baseline"
    )
    head = [
        f"# Ablation: suite {suite_name}",
        "",
        "Accuracies in %, mean ± 95% t-interval over seeds, on the same images for every method and seed "
        "(results/PROTOCOL.md); clean lost: points below the unpruned model on the same images. A comparison "
        "is a win or a loss only where its interval excludes zero. The best baseline is the one-shot baseline with "
        f"the highest mean clean accuracy per model and target: {best_rule}.",
        "",
    ]
    if glance:
        columns = [
            "| model | target | seeds | vs progressive_uniform | vs oneshot_search | vs search_random "
            "| vs best baseline |",
            "|---|---|---|---|---|---|---|",
        ]
        head += [
            "## Verdicts at a glance",
            "",
            "Search against each rival, clean / PGD, by the frozen rule: a 95% bootstrap interval over seeds and "
            "images (W win, T tie, L loss; * a bound within 0.1 points of zero, at the bootstrap's Monte Carlo "
            "boundary; the sections below give the intervals). The last row counts them: wins-ties-losses, "
            "clean / PGD.",
            "",
            *columns,
            *(_glance_line(*g, rule="pooled") for g in glance),
            _tally_line(tallies, rule="pooled"),
            "",
            "## Verdicts under both rules",
            "",
            "The claim's count (results/PROTOCOL.md, amendment 9): a win or a loss only where the pooled "
            "bootstrap and the seed-level t-interval (2 degrees of freedom with 3 seeds) agree and no pooled "
            "bound is at the Monte Carlo boundary; otherwise a tie. (W) and (L): a tie here that is a win or "
            "a loss under the pooled rule alone; (W*) and (L*): one at the Monte Carlo boundary. The last row "
            "counts wins-ties-losses under both rules, clean / PGD.",
            "",
            *columns,
            *(_glance_line(*g, rule="both") for g in glance),
            _tally_line(tallies, rule="both"),
            "",
            *_other_metrics_lines(glance),
        ]
    return "\n".join(head + out + _compute_lines(rows))


def _compute_lines(rows: list[dict]) -> list[str]:
    """Wall-clock hours the cells took, per method: producing the model (a reused model's pruning in its earlier
    run) and evaluating it."""
    by_method: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_method[row["method"]].append(row)

    def prune(r: dict) -> float:
        return r["pruned_in"]["prune_seconds"] if "pruned_in" in r else r["prune_seconds"]

    lines = [
        "## Compute used",
        "",
        "Wall-clock hours summed over cells, each cell in one process (the bench's runners used one torch "
        "thread each). Pruning counts a reused model (`pruned_in`) with its earlier run's time, so it is what "
        "producing the models took, not only this run. Evaluation time is recorded by cells run from the "
        "commit that added it.",
        "",
        "| method | cells | pruning h | evaluation h (cells timed) |",
        "|---|---|---|---|",
    ]
    for method in sorted(by_method):
        group = by_method[method]
        timed = [r["eval_seconds"] for r in group if "eval_seconds" in r]
        evaluation = f"{sum(timed) / 3600:.2f} ({len(timed)})" if timed else "-"
        lines.append(f"| {method} | {len(group)} | {sum(map(prune, group)) / 3600:.2f} | {evaluation} |")
    total = sum(prune(r) for r in rows) / 3600
    lines += ["", f"Pruning in all: {total:.1f} h.", ""]
    return lines


_LETTER = {"win": "W", "tie": "T", "loss": "L"}


def _mark(result, rule: str) -> str:
    """A comparison's glance letter under the pooled rule alone or under both rules (amendment 9)."""
    if result is None:
        return "-"
    pooled = _LETTER[result.verdict] + ("*" if result.at_boundary else "")
    if rule == "pooled":
        return pooled
    both = result.both_rules_verdict
    return _LETTER[both] if both != "tie" or result.verdict == "tie" else f"({pooled})"


def _counted(result, rule: str) -> str | None:
    if result is None:
        return None
    return result.verdict if rule == "pooled" else result.both_rules_verdict


def _glance_line(
    model: str, target: float, kind: str, by_method: dict[str, list[dict]], compared, rule: str = "pooled"
) -> str:
    """One row of the summary: the clean and PGD verdict letters of each comparison."""
    marks = {key: " / ".join(_mark(v, rule) for v in verdicts[:2]) for key, _label, _cells, verdicts in compared}
    seeds = len({r["seed"] for r in by_method.get("search", [])})
    columns = [marks.get(r, "") for r in (*RIVALS, "best baseline")]
    return f"| {model} | {target:g} of {kind} | {seeds} | " + " | ".join(columns) + " |"


def _tally_line(tallies: list, rule: str = "pooled") -> str:
    """The glance table's last row: per rival, how many (model, target) pairs search wins, ties and loses."""
    counts: dict[str, list[Counter]] = defaultdict(lambda: [Counter(), Counter()])
    for compared in tallies:
        for key, _label, _cells, verdicts in compared:
            for metric, result in enumerate(verdicts[:2]):
                counts[key][metric][_counted(result, rule)] += 1

    def column(key: str) -> str:
        if key not in counts:
            return ""
        return " / ".join("{}-{}-{}".format(*(c[v] for v in ("win", "tie", "loss"))) for c in counts[key])

    columns = [column(key) for key in (*RIVALS, "best baseline")]
    return "| **wins-ties-losses** | | | " + " | ".join(columns) + " |"


OTHER_METRICS = ("APGD", "corruption", *(f"AUROC {n}" for n in OOD_SETS))


def _other_metrics_lines(glance: list[tuple]) -> list[str]:
    """Per rival, wins-ties-losses of search on APGD (both rules), corruption accuracy and each OOD AUROC (seed-level
    t-interval: one number per cell), and the (model, target) pairs it loses."""
    counts: dict[str, list[Counter]] = defaultdict(lambda: [Counter() for _ in OTHER_METRICS])
    lost: dict[str, list[list[str]]] = defaultdict(lambda: [[] for _ in OTHER_METRICS])
    for model, target, _kind, _by_method, compared in glance:
        for key, _label, _cells, verdicts in compared:
            for metric, result in enumerate(verdicts[2:]):
                verdict = _counted(result, "both") if metric == 0 else (result.verdict if result else None)
                counts[key][metric][verdict] += 1
                if verdict == "loss":
                    lost[key][metric].append(f"{model} {target:g}")
    rivals = [key for key in (*RIVALS, "best baseline") if key in counts]
    lines = [
        "## Other metrics at a glance",
        "",
        "Search against each rival over the (model, target) pairs, wins-ties-losses: APGD under both rules (as "
        "above), corruption accuracy and OOD AUROC by the 95% t-interval of the per-seed differences (one number per "
        "cell, so no bootstrap over images). No verdict (one seed) counts in none of the three.",
        "",
        "| rival | " + " | ".join(OTHER_METRICS) + " |",
        "|---|" + "---|" * len(OTHER_METRICS),
    ]
    for key in rivals:
        tally = ["{}-{}-{}".format(*(c[v] for v in ("win", "tie", "loss"))) for c in counts[key]]
        lines.append(f"| {key} | " + " | ".join(tally) + " |")
    losses = [
        f"- vs {key}, {name}: " + ", ".join(names)
        for key in rivals
        for name, names in zip(OTHER_METRICS, lost[key], strict=True)
        if names
    ]
    lines += ["", "Where search loses:" if losses else "Search loses none of these.", "", *losses]
    return [*lines, ""] if losses else lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("val", "test"), required=True)
    parser.add_argument("--summarize-only", action="store_true", help="only write the table from finished cells")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--models", nargs="+", help="run only these models' cells (a second runner, another machine)")
    parser.add_argument("--seeds", nargs="+", type=int, help="run only these seeds' cells")
    parser.add_argument("--targets", nargs="+", type=float, help="run only these targets' cells")
    parser.add_argument("--methods", nargs="+", help="run only these methods' cells")
    parser.add_argument(
        "--save-missing-models",
        action="store_true",
        help="validation only: prune again the finished cells whose model was not kept, and keep each model that "
        "reproduces its cell's clean predictions up to rounding ties (for --pruned-from and benchmarks.portfolio); "
        "no table",
    )
    parser.add_argument(
        "--pruned-from",
        help="another run's folder (e.g. results/ablation_val): evaluate its saved models of the same cells "
        "(pruning is data-free) instead of pruning again where they exist",
    )
    args = parser.parse_args(argv)
    command = start("ablation", argv)
    name = "ablation_val" if args.split == "val" else "ablation"
    suite = load_suite(name)
    out = RESULTS / name
    if args.pruned_from and not all((Path(args.pruned_from) / d).is_dir() for d in ("cells", "models")):
        parser.error(f"--pruned-from {args.pruned_from}: needs that run's cells/ and models/ (models/ is not in git)")
    if args.save_missing_models:
        if args.split != "val":
            parser.error("--save-missing-models: models are kept for the validation run only")
        done = save_missing_models(part_of(suite, args.models, args.seeds, args.targets, args.methods), out)
        print("; ".join(f"{len(ids)} {outcome}" for outcome, ids in done.items()))
        if done["differs"]:
            print("not kept (predictions differ): " + ", ".join(done["differs"]))
        return
    if not args.summarize_only:
        part = part_of(suite, args.models, args.seeds, args.targets, args.methods)
        run_suite(part, out, workers=args.workers, threads=args.threads, pruned_from=args.pruned_from)
    rows = finished_rows(suite, out)
    if not rows:
        sys.exit(f"no finished cells in {out}/cells")
    originals = {model: original_row(suite, model, out) for model in sorted({r["model"] for r in rows})}
    # the test table's best baseline is the validation run's choice (PROTOCOL amendment 9)
    chosen = None
    if args.split == "test":
        chosen = best_baselines(finished_rows(load_suite("ablation_val"), RESULTS / "ablation_val"))
        if not chosen:
            sys.exit(
                f"no finished validation cells in {RESULTS / 'ablation_val' / 'cells'}: the test table's best "
                "baseline is the validation run's choice (results/PROTOCOL.md, amendment 9)"
            )
    prov = provenance()
    text = ablation_markdown(rows, name, originals, chosen=chosen)
    text += (
        f"\n{len(rows)} of {len(suite.cells())} cells finished. Table written by `{command}` at commit "
        f"{prov['commit']} on {prov['machine']}, torch {prov['torch']}; each cell's JSON in {out.name}/cells "
        "holds its own provenance (the commit and machine it ran on).\n"
    )
    text += _reuse_note(rows)
    text += _hosts_note(rows)
    atomic_write_text(RESULTS / f"{name}.md", text)
    print(text)


def _reuse_note(rows: list[dict]) -> str:
    """How many cells evaluated another run's saved model (--pruned-from) and why the others pruned again."""
    reused = sum("pruned_in" in r for r in rows)
    why = Counter(r["pruned_again"] for r in rows if r.get("pruned_again"))
    if not reused and not why:
        return ""
    again = "; ".join(f"{n} because: {reason}" for reason, n in why.most_common())
    checked = [r["reproduces_earlier"] for r in rows if "reproduces_earlier" in r]
    same = (
        f" Of those, {sum(checked)} of {len(checked)} reproduce the clean predictions of their validation cell "
        "on the validation images up to rounding ties (`reproduces_earlier`): the same model the decision saw."
        if checked
        else ""
    )
    return (
        f"\n{reused} cells evaluated the model the validation run saved (`pruned_in` in the cell); "
        f"{sum(why.values())} pruned again at this run's commit{': ' + again if again else ''}.{same}\n"
    )


def _hosts_note(rows: list[dict]) -> str:
    """Where the cells ran (commit, host, torch) and how many (model, target, seed) blocks mix hosts (PROTOCOL 8)."""
    hosts: dict[tuple, set[str]] = {}
    unnamed = set()
    for r in rows:
        host = r["report"]["provenance"]["machine"].split(",")[0]  # the CPU part, not thread counts
        block = (r["model"], r["target"], r["seed"])
        if "(" in host:  # "x86_64 AMD EPYC (AVX512)"; cells from before 7575f9b say only "x86_64 Linux"
            hosts.setdefault(block, set()).add(host)
        else:
            unnamed.add(block)
    blocks = {(r["model"], r["target"], r["seed"]) for r in rows}
    mixed = sum(len(h) > 1 for h in hosts.values())
    unknown = (
        f" {len(unnamed)} blocks hold cells that do not name their host (run before provenance named the CPU), "
        "so whether those mix hosts is unknown."
        if unnamed
        else ""
    )
    return (
        "\nWhere the cells ran:\n\n"
        + "\n".join(cell_sources(rows))
        + f"\n\n{mixed} of {len(blocks)} (model, target, seed) blocks mix named hosts; their paired comparisons "
        f"carry the host noise of PROTOCOL item 8.{unknown}\n"
    )


def finished_rows(suite: Suite, out) -> list[dict]:
    """The suite's finished cells in ``out/cells`` (not the bench's ``<model>__original.json`` files there)."""
    ids = {cell_id(*c) for c in suite.cells()}
    return [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json")) if p.stem in ids]


def original_row(suite: Suite, model: str, out) -> dict:
    """The unpruned model evaluated as a cell is (the same report and per-image correctness), cached in
    ``out/originals/<model>.json``: the "before" of before -> after."""
    path = out / "originals" / f"{model}.json"
    if path.is_file():
        return json.loads(path.read_text())
    print(f"evaluating the unpruned {model} on the suite's images ...", flush=True)
    net, spec = zoo.load(model)
    report = evaluate(net, spec, settings=EvalSettings(**suite.eval), model_ref=f"zoo:{model}", quiet=True)
    correct = correctness(net, spec, PairedSettings(**suite.paired))
    row = {"model": model, "report": report, "per_image": {k: pack(v) for k, v in correct.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, row)
    return row


def part_of(suite: Suite, models=None, seeds=None, targets=None, methods=None) -> Suite:
    """The suite restricted to some models, seeds, targets or methods: runners on disjoint parts share one cells folder
    (a one-worker runner skips a cell another finished meanwhile); the table is written from every finished cell."""
    for label, asked, known in (
        ("model", models, suite.models),
        ("seed", seeds, suite.seeds),
        ("target", targets, suite.targets),
        ("method", methods, suite.methods),
    ):
        unknown = sorted(set(asked or ()) - set(known))
        if unknown:
            raise SystemExit(f"suite {suite.name} has no {label} {', '.join(map(str, unknown))}")
    return dataclasses.replace(
        suite,
        models={m: kind for m, kind in suite.models.items() if not models or m in models},
        seeds=[s for s in suite.seeds if not seeds or s in seeds],
        targets=[t for t in suite.targets if not targets or t in targets],
        methods=[m for m in suite.methods if not methods or m in methods],
    )


if __name__ == "__main__":
    main()
