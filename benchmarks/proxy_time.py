"""Wall time of scoring one candidate with every proxy (resnet20, the search's default probes).

    python benchmarks/proxy_time.py [--model resnet20] [--repeats 5]

Appends a row to results/proxy_time.md: median seconds for the forward-pass proxies
(fidelity, kl, robust_fidelity, open_world, feature, feature_sp) over all probes, for
attack_robustness (FGSM on 128 synthetic probes), and for BN re-estimation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from robustprune import zoo
from robustprune._provenance import provenance
from robustprune.compensate import bn_reestimate_overrides
from robustprune.importance import all_scores, select_keep
from robustprune.probes.probeset import build_probes
from robustprune.proxies import score
from robustprune.search.engine import SEARCH_PROBES
from robustprune.structure import PruneSpace

RESULTS = Path(__file__).resolve().parent.parent / "results"


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/proxy_time.py " + " ".join(sys.argv[1:] if argv is None else argv)
    model, spec = zoo.load(args.model)
    space = PruneSpace(model, spec)
    probes = build_probes(model, spec, space.output_layer, SEARCH_PROBES)
    candidate = select_keep(space, {g.name: 0.3 for g in space.groups}, scores=all_scores(space, "l1"))
    bn_inputs = spec.normalize(probes.pixels["synthetic"])
    overrides = bn_reestimate_overrides(space, candidate, bn_inputs, batch_size=len(bn_inputs))
    t_bn = median_time(
        lambda: bn_reestimate_overrides(space, candidate, bn_inputs, batch_size=len(bn_inputs)), args.repeats
    )
    t_fwd = median_time(lambda: score(space, probes, candidate, overrides, attack=None), args.repeats)
    t_all = median_time(lambda: score(space, probes, candidate, overrides, attack="fgsm"), args.repeats)
    prov = provenance()
    path = RESULTS / "proxy_time.md"
    if not path.exists():
        path.write_text(
            "# Proxy scoring time per candidate\n\n| model | probes | BN re-estimation (s) | forward-pass "
            "proxies (s) | all proxies incl. FGSM attack_robustness (s) | command | commit | machine |\n"
            "|---|---|---|---|---|---|---|---|\n"
        )
    with path.open("a") as fh:
        fh.write(
            f"| {args.model} | {len(probes)} | {t_bn:.2f} | {t_fwd:.2f} | {t_all:.2f} | `{command.strip()}` | "
            f"`{prov['commit']}` | {prov['machine']} |\n"
        )
    print(f"bn {t_bn:.2f}s, forward proxies {t_fwd:.2f}s, all {t_all:.2f}s on {len(probes)} probes")


if __name__ == "__main__":
    main()
