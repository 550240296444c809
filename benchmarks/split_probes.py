"""Does fitting and scoring on separate probes (``SearchConfig.split_probes``) make the search pull its weight?

    python -m benchmarks.split_probes                       # run the missing cells, then write the table
    python -m benchmarks.split_probes --methods search progressive_uniform --models vgg11_bn
    python -m benchmarks.split_probes --summarize-only

Validation split only (results/PROTOCOL.md): the decision run. Runs the suite ``split_val`` (the four search-type
methods of ``ablation_val`` with ``split_probes``) into results/split_val/, then writes results/split_val.md:

- the ablation's whole table (``benchmarks.ablation.ablation_markdown``) for these cells and ``ablation_val``'s
  one-shot baseline cells, which do not use the search's scoring and are evaluated on the same images: does the
  allocation beat the same machinery with even steps, and the strongest one-shot baseline, with the split;
- and each split method against the same method without it (``ablation_val``'s cells), paired over seeds and
  images, both rules (amendment 9).
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
    _per_image,
    ablation_markdown,
    finished_rows,
    original_row,
    part_of,
)
from robustprune._io import atomic_write_text
from robustprune._provenance import provenance
from robustprune.bench import load_suite, run_suite
from robustprune.evaluate.stats import compare
from robustprune.search import SEARCH_VARIANTS

NAME = "split_val"
BEFORE = "ablation_val"  # the same cells without the split, and the one-shot baselines


def _same_images(suite, before) -> None:
    """The two suites must evaluate on the same images, or nothing here is paired."""
    if (suite.eval, suite.paired) != (before.eval, before.paired):
        raise SystemExit(f"suites {suite.name} and {before.name} evaluate differently; nothing would be paired")


def against_unsplit(rows: list[dict], before_rows: list[dict], n_resamples: int = 10_000) -> list[str]:
    """Each search-type method with the split against itself without it: per (model, target), clean / PGD / APGD
    differences (points) with the pooled interval and the seed t-interval, and the both-rules tally."""
    after, earlier = _groups(rows), _groups(before_rows)
    lines = [
        "## Each method with the split against itself without it",
        "",
        "Points (with split - without), on the same images and seeds: 95% bootstrap interval over seeds and images, "
        "then the seed-level t-interval, each with its verdict (results/PROTOCOL.md, amendment 9). The last rows "
        "count (model, target) pairs won, tied and lost under both rules.",
        "",
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
    lines += ["", "| method | clean | PGD | APGD |", "|---|---|---|---|"]
    for method in SEARCH_VARIANTS:
        counts = [tally.get((method, metric)) for metric in METRICS]
        if any(counts):
            text = ["{}-{}-{}".format(*(c[v] for v in ("win", "tie", "loss"))) if c else "-" for c in counts]
            lines.append(f"| {method} | " + " | ".join(text) + " |")
    return [*lines, ""]


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
    suite, before = load_suite(NAME), load_suite(BEFORE)
    _same_images(suite, before)
    out, before_out = RESULTS / NAME, RESULTS / BEFORE
    if not args.summarize_only:
        part = part_of(suite, args.models, args.seeds, args.targets, args.methods)
        run_suite(part, out, workers=args.workers, threads=args.threads)
    rows = finished_rows(suite, out)
    if not rows:
        sys.exit(f"no finished cells in {out}/cells")
    before_rows = finished_rows(before, before_out)
    baselines = [r for r in before_rows if r["method"] not in SEARCH_VARIANTS]
    pairs = {(r["model"], r["target"]) for r in rows}
    table_rows = rows + [r for r in baselines if (r["model"], r["target"]) in pairs]
    originals = {model: original_row(before, model, before_out) for model in sorted({m for m, _ in pairs})}
    prov = provenance()
    text = ablation_markdown(table_rows, NAME, originals)
    text += "\n" + "\n".join(against_unsplit(rows, before_rows))
    text += (
        f"\n{len(rows)} of {len(suite.cells())} cells of suite {NAME} finished; the one-shot baselines and the "
        f"cells without the split are {BEFORE}'s. Table written by `{command}` at commit {prov['commit']} on "
        f"{prov['machine']}, torch {prov['torch']}; each cell's JSON holds its own provenance.\n"
    )
    atomic_write_text(RESULTS / f"{NAME}.md", text)
    print(json.dumps({"cells": len(rows), "written": str(RESULTS / f"{NAME}.md")}))


if __name__ == "__main__":
    main()
