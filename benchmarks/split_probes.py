"""Does fitting and scoring on separate probes (``SearchConfig.split_probes``) make the search better?

    python -m benchmarks.split_probes --methods search      # the decision's cells: both arms, seed by seed
    python -m benchmarks.split_probes --methods progressive_uniform oneshot_search search_random
    python -m benchmarks.split_probes --summarize-only

Validation split only (results/PROTOCOL.md, amendment 10): the decision run. Two suites run in one run, on one host:
``split_val`` (the four search-type methods of ``ablation_val`` with ``split_probes``) into results/split_val/, and
its control arm ``split_val_off`` (``search`` without it) into results/split_val_off/, seed by seed so that the
finished cells pair up. Then writes results/split_val.md:

- the amendment's decision, from ``search`` with the split against ``search`` without it (both arms of this run),
  paired over seeds and images, both rules (amendment 9);
- the ablation's whole table (``benchmarks.ablation.ablation_markdown``) for the split cells and ``ablation_val``'s
  one-shot baseline cells, which do not use the search's scoring and are evaluated on the same images: does the
  allocation beat the same machinery with even steps, and the strongest one-shot baseline, with the split.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from benchmarks._common import RESULTS, start
from benchmarks.ablation import (
    METRICS,
    _groups,
    _hosts_note,
    _per_image,
    ablation_markdown,
    finished_rows,
    original_row,
    part_of,
)
from robustprune._io import atomic_write_text
from robustprune._provenance import provenance
from robustprune.bench import Suite, load_suite, run_suite, suite_settings
from robustprune.evaluate.stats import compare
from robustprune.search import SEARCH_VARIANTS

SPLIT, CONTROL = "split_val", "split_val_off"
BEFORE = "ablation_val"  # the one-shot baseline cells and the unpruned models' rows, on the same images


def comparable(suites: list[Suite]) -> None:
    """The suites must evaluate on the same images and search alike but for ``split_probes``, or nothing is paired."""
    first = suites[0]

    def search(suite: Suite) -> dict:
        return {k: v for k, v in suite.search.items() if k != "split_probes"}

    for suite in suites[1:]:
        if (suite.eval, suite.paired, search(suite)) != (first.eval, first.paired, search(first)):
            raise SystemExit(
                f"suites {first.name} and {suite.name} differ beyond split_probes; nothing would be paired"
            )


def checked_rows(suite: Suite, out) -> list[dict]:
    """The suite's finished cells, each refused unless it was computed under the suite's settings."""
    rows = finished_rows(suite, out)
    expected = json.loads(json.dumps(suite_settings(suite)))
    for row in rows:
        if row.get("suite_settings") != expected:
            raise SystemExit(f"a cell in {out}/cells was computed under other settings than suite {suite.name}")
    return rows


def against_control(rows: list[dict], control: list[dict], n_resamples: int = 10_000) -> tuple[list[str], dict]:
    """Each method with the split against the same method without it: per (model, target), clean / PGD / APGD
    differences (points) with the pooled interval and the seed t-interval. Returns the lines and, per
    (method, metric), the both-rules verdict counts over pairs with at least two shared seeds."""
    after, earlier = _groups(rows), _groups(control)
    lines = [
        "| model | target | method | seeds | clean | PGD | APGD |",
        "|---|---|---|---|---|---|---|",
    ]
    tally: dict[tuple[str, str], Counter] = {}
    for (model, target), by_method in sorted(after.items()):
        for method in SEARCH_VARIANTS:
            mine, theirs = by_method.get(method, []), earlier.get((model, target), {}).get(method, [])
            shared = {r["seed"] for r in mine} & {r["seed"] for r in theirs}
            if not shared:
                continue
            mine = [r for r in mine if r["seed"] in shared]
            theirs = [r for r in theirs if r["seed"] in shared]
            cells = []
            for metric in METRICS:
                a, b = _per_image(mine, metric), _per_image(theirs, metric)
                if a is None or b is None or a.shape != b.shape:
                    cells.append("-")
                    continue
                result = compare(a, b, n_resamples=n_resamples)
                cells.append(result.describe(both_rules=True))
                if len(shared) > 1:
                    tally.setdefault((method, metric), Counter())[result.both_rules_verdict] += 1
            lines.append(f"| {model} | {target:g} | {method} | {len(shared)} | " + " | ".join(cells) + " |")
    return [*lines, ""], tally


def decision(tally: dict, search_cells: tuple[int, int], expected: int, pairs: int) -> str:
    """Amendment 10's rule on ``search`` with against without the split, clean and PGD, under both rules."""
    counts = {m: tally.get(("search", m), Counter()) for m in ("clean", "pgd")}
    text = ", ".join(
        f"{label} {c['win']}-{c['tie']}-{c['loss']} of {sum(c.values())} pairs"
        for label, c in (("clean", counts["clean"]), ("PGD", counts["pgd"]))
    )
    if min(search_cells) < expected or any(sum(c.values()) < pairs for c in counts.values()):
        return (
            f"**Decision (amendment 10): not yet.** {search_cells[0]} and {search_cells[1]} of {expected} search "
            f"cells (with, without the split); so far {text}."
        )
    net = [c["win"] - c["loss"] for c in counts.values()]
    adopt = min(net) >= 0 and max(net) >= 2
    outcome = (
        " The other three search-type methods' split cells run next (`--methods progressive_uniform oneshot_search "
        "search_random`), then the test table once more for the four search-type methods."
        if adopt
        else " So the other three search-type methods' split cells were not run (amendment 10 runs them only if "
        "the split is adopted), and the claim's test table stands as run."
    )
    return (
        f"**Decision (amendment 10): {'adopt split_probes as the default' if adopt else 'keep split_probes off'}.** "
        f"Search with against without the split, under both rules: {text} (wins - losses {net[0]:+d} clean, "
        f"{net[1]:+d} PGD; the rule adopts at >= 0 on both and >= +2 on at least one).{outcome}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summarize-only", action="store_true", help="only write the table from finished cells")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--models", nargs="+")
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--targets", nargs="+", type=float)
    parser.add_argument("--methods", nargs="+")
    args = parser.parse_args(argv)
    command = start("split_probes", argv)
    split, control, before = load_suite(SPLIT), load_suite(CONTROL), load_suite(BEFORE)
    comparable([split, control, before])
    out, control_out, before_out = RESULTS / SPLIT, RESULTS / CONTROL, RESULTS / BEFORE
    if not args.summarize_only:
        for seed in args.seeds or split.seeds:  # seed by seed, both arms: finished cells pair up as they come
            run_suite(part_of(split, args.models, [seed], args.targets, args.methods), out, **_run(args))
            if not args.methods or "search" in args.methods:
                run_suite(part_of(control, args.models, [seed], args.targets), control_out, **_run(args))
    rows = checked_rows(split, out)
    if not rows:
        sys.exit(f"no finished cells in {out}/cells")
    control_rows = checked_rows(control, control_out)
    baselines = [r for r in checked_rows(before, before_out) if r["method"] not in SEARCH_VARIANTS]
    pairs = {(r["model"], r["target"]) for r in rows}
    table_rows = rows + [r for r in baselines if (r["model"], r["target"]) in pairs]
    originals = {model: original_row(before, model, before_out) for model in sorted({m for m, _ in pairs})}
    compared, tally = against_control(rows, control_rows)
    n_search = (sum(r["method"] == "search" for r in rows), len(control_rows))
    expected = sum(1 for c in split.cells() if c[1] == "search")
    all_pairs = len(split.models) * len(split.targets)
    prov = provenance()
    text = "\n".join(
        [
            "# Fitting and scoring on separate probes (`split_probes`): the decision run (validation)",
            "",
            decision(tally, n_search, expected, all_pairs),
            "",
            "## Each method with the split against itself without it (this run, this host)",
            "",
            "Points (with split - without), on the same images and seeds: 95% bootstrap interval over seeds and "
            "images, then the seed-level t-interval, each with its verdict (results/PROTOCOL.md, amendment 9). "
            "Pairs with one shared seed have no seed-level interval and are not counted.",
            "",
            *compared,
            "| method | clean | PGD | APGD |",
            "|---|---|---|---|",
            *_tally_lines(tally),
            "",
            "## The ablation's table with the split",
            "",
            "The search-type methods with the split (this run) and ablation_val's one-shot baselines, which do not "
            "use the search's scoring, on the same images.",
            "",
        ]
    )
    text += ablation_markdown(table_rows, SPLIT, originals).split("\n", 1)[1]
    text += (
        f"\n{len(rows)} of {len(split.cells())} cells of suite {SPLIT} and {len(control_rows)} of "
        f"{len(control.cells())} of {CONTROL} finished; the one-shot baselines are {BEFORE}'s. Table written by "
        f"`{command}` at commit {prov['commit']} on {prov['machine']}, torch {prov['torch']}; each cell's JSON holds "
        "its own provenance.\n"
    )
    text += _hosts_note(rows + control_rows)
    atomic_write_text(RESULTS / f"{SPLIT}.md", text)
    print(json.dumps({"cells": len(rows), "control cells": len(control_rows), "written": str(RESULTS / f"{SPLIT}.md")}))


def _tally_lines(tally: dict) -> list[str]:
    """Per method, wins-ties-losses with against without the split on clean, PGD and APGD."""

    def counts(key) -> str:
        return "{}-{}-{}".format(*(tally[key][v] for v in ("win", "tie", "loss"))) if key in tally else "-"

    methods = [m for m in SEARCH_VARIANTS if any((m, metric) in tally for metric in METRICS)]
    return [f"| {m} | " + " | ".join(counts((m, metric)) for metric in METRICS) + " |" for m in methods]


def _run(args) -> dict:
    return {"workers": args.workers, "threads": args.threads}


if __name__ == "__main__":
    main()
