"""Do the data-free proxies predict real accuracy and robustness? Spearman correlations over random candidates.

    python benchmarks/proxy_validity.py [--candidates 40] [--models resnet20 cnn] [--eps 0.03]

eps 0.03 (for the adversarial probes and the real PGD attack): at the harness default of
0.1 the zoo models' PGD accuracy is within a few percent of zero, so its ranks are noise.

For each model, draws random pruned candidates (random per-group amounts whose overall
MAC reduction is spread uniformly over 10%..70%, l1 importance, BN statistics re-estimated
on a separate set of synthetic inputs, as the search does), computes every proxy on probe
sets built from each synthetic kind (gaussian, bn_stats, inversion), and measures real
clean accuracy and PGD robust accuracy with the evaluation harness. Writes
results/proxy_validity.md, results/proxy_validity.json and scatter plots under
results/proxy_validity/.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from robustprune import zoo  # noqa: E402
from robustprune._io import atomic_write_json, atomic_write_text  # noqa: E402
from robustprune._provenance import provenance  # noqa: E402
from robustprune.compensate import bn_reestimate_overrides  # noqa: E402
from robustprune.data.fashion_mnist import load_fashion_mnist  # noqa: E402
from robustprune.evaluate.attacks import robust_accuracy  # noqa: E402
from robustprune.evaluate.metrics import accuracy, predict_logits  # noqa: E402
from robustprune.importance import all_scores, select_keep  # noqa: E402
from robustprune.probes.cache import cached_generate  # noqa: E402
from robustprune.probes.probeset import ProbeConfig, build_probes  # noqa: E402
from robustprune.probes.synthetic import SyntheticConfig  # noqa: E402
from robustprune.proxies import PROXIES, _Candidate, score  # noqa: E402
from robustprune.search.objective import fit_amounts  # noqa: E402
from robustprune.structure import PruneSpace, masked  # noqa: E402
from robustprune.targets import Target  # noqa: E402

RESULTS = Path(__file__).resolve().parent.parent / "results"
KINDS = ("gaussian", "bn_stats", "inversion")
ROBUST_PROXIES = ("robust_fidelity", "attack_robustness")


def random_amounts(space: PruneSpace, gen: torch.Generator) -> dict[str, float]:
    reduction = 0.1 + 0.6 * torch.rand(1, generator=gen).item()
    direction = {g.name: torch.rand(1, generator=gen).item() for g in space.groups}
    amounts, feasible = fit_amounts(space, {}, direction, 0.9, Target(macs=1 - reduction), max_amount=0.9)
    if not feasible:  # the direction left too many groups near zero: fall back to uniform
        amounts, _ = fit_amounts(space, {}, {g.name: 1.0 for g in space.groups}, 0.9, Target(macs=1 - reduction))
    return amounts


def run_model(name: str, n_candidates: int, eps: float, n_probes: int, probe_steps: int, seed: int, log) -> dict:
    model, spec = zoo.load(name)
    space = PruneSpace(model, spec)
    x_test, y_test = load_fashion_mnist("test")
    subset = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(seed))[:1000]
    probesets, gen_seconds = {}, {}
    for kind in KINDS:
        config = ProbeConfig(
            synthetic=SyntheticConfig(kind=kind, n=n_probes, steps=probe_steps, seed=seed), eps=eps, seed=seed
        )
        start = time.time()
        probesets[kind] = build_probes(model, spec, space.output_layer, config, progress=log)
        gen_seconds[kind] = time.time() - start
        log(f"{name}: {kind} probes ready ({gen_seconds[kind]:.0f}s)")
    calibration = cached_generate(
        model, spec, SyntheticConfig(kind="inversion", n=n_probes, steps=probe_steps, seed=seed + 1)
    ).pixels
    scores = all_scores(space, "l1")
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n_candidates):
        amounts = random_amounts(space, gen)
        candidate = select_keep(space, amounts, scores=scores)
        macs, params = space.cost(candidate)
        overrides = bn_reestimate_overrides(space, candidate, spec.normalize(calibration), batch_size=len(calibration))
        row = {"kept_macs": macs / space.full_macs, "amounts": amounts, "proxies": {}}
        for kind, probes in probesets.items():
            row["proxies"][kind] = score(space, probes, candidate, overrides, attack="fgsm")
        module = _Candidate(space.model, overrides)
        with masked(space, candidate):
            row["clean_accuracy"] = accuracy(predict_logits(module, spec, x_test), y_test)
            row["pgd"] = robust_accuracy(module, spec, x_test[subset], y_test[subset], attack="pgd", eps=eps, seed=seed)
        rows.append(row)
        log(
            f"{name} candidate {i + 1}/{n_candidates}: MACs {100 * row['kept_macs']:.1f}%, clean "
            f"{row['clean_accuracy']:.4f}, pgd {row['pgd']:.4f}, "
            f"fidelity(inv) {row['proxies']['inversion']['fidelity']:.3f}"
        )
    return {"rows": rows, "generation_seconds": gen_seconds}


def correlations(rows: list[dict]) -> dict:
    out = {}
    for kind in KINDS:
        for proxy in PROXIES:
            values = [r["proxies"][kind][proxy] for r in rows]
            sign = 1 if PROXIES[proxy][1] == "max" else -1  # report rho so that "good proxy" is positive
            out[(kind, proxy, "clean_accuracy")] = sign * spearmanr(values, [r["clean_accuracy"] for r in rows])[0]
            if proxy in ROBUST_PROXIES:
                out[(kind, proxy, "pgd")] = sign * spearmanr(values, [r["pgd"] for r in rows])[0]
    return out


def scatter(name: str, rows: list[dict], directory: Path) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    pairs = [(p, "clean_accuracy") for p in PROXIES] + [(p, "pgd") for p in ROBUST_PROXIES]
    for proxy, real in pairs:
        fig, ax = plt.subplots(figsize=(3.5, 2.6))
        for kind, marker in zip(KINDS, "o^s", strict=True):
            ax.scatter(
                [r["proxies"][kind][proxy] for r in rows],
                [100 * r[real] for r in rows],
                s=10,
                marker=marker,
                label=kind,
                alpha=0.8,
            )
        ax.set_xlabel(f"{proxy} ({'higher' if PROXIES[proxy][1] == 'max' else 'lower'} is better)")
        ax.set_ylabel("real clean accuracy (%)" if real == "clean_accuracy" else "real PGD robust accuracy (%)")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, frameon=False)
        path = directory / f"{name}_{proxy}_vs_{real}.png"
        fig.savefig(path, dpi=150, bbox_inches="tight")
        plt.close(fig)
        written.append(path.name)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet20", "cnn"])
    parser.add_argument("--candidates", type=int, default=40)
    parser.add_argument("--eps", type=float, default=0.03)
    parser.add_argument("--n-probes", type=int, default=256)
    parser.add_argument("--probe-steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/proxy_validity.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    results = {
        name: run_model(name, args.candidates, args.eps, args.n_probes, args.probe_steps, args.seed, log)
        for name in args.models
    }
    prov = provenance(seed=args.seed)
    lines = [
        "# Do the proxies predict real accuracy and robustness?",
        "",
        f"Produced by `{command.strip()}` at commit `{prov['commit']}`, seed {args.seed}, on {prov['machine']} "
        f"(torch {prov['torch']}).",
        "",
        f"{args.candidates} random candidates per model: random per-group removal fractions with the overall MAC "
        "reduction drawn uniformly from 10%-70%, l1 channel ranking, BN statistics re-estimated on a separate "
        f"set of {args.n_probes} inversion images (as the search does). Proxies on {args.n_probes} synthetic "
        f"probes of each kind ({args.probe_steps} Adam steps for bn_stats/inversion), adversarial probes = PGD "
        f"eps {args.eps} against the original; attack_robustness = FGSM eps {args.eps} on the candidate itself "
        f"(128 probes). Real: clean accuracy on 10,000 test images, PGD (eps {args.eps}, 10 steps) on 1,000.",
        "",
        "Spearman rho, signed so that a useful proxy is positive (lower-is-better proxies are negated).",
        "",
    ]
    payload = {"command": command.strip(), "provenance": prov, "models": {}}
    for name, res in results.items():
        rho = correlations(res["rows"])
        payload["models"][name] = {
            "rows": res["rows"],
            "generation_seconds": res["generation_seconds"],
            "spearman": {"|".join(k): v for k, v in rho.items()},
        }
        clean = [r["clean_accuracy"] for r in res["rows"]]
        pgd = [r["pgd"] for r in res["rows"]]
        lines += [
            f"## {name}",
            "",
            f"Real clean accuracy of the candidates: {100 * min(clean):.1f}%-{100 * max(clean):.1f}%; "
            f"PGD robust accuracy: {100 * min(pgd):.1f}%-{100 * max(pgd):.1f}%. Probe generation: "
            + ", ".join(f"{k} {v:.0f}s" for k, v in res["generation_seconds"].items())
            + ".",
            "",
            "| proxy | vs | " + " | ".join(KINDS) + " |",
            "|---|---|" + "---|" * len(KINDS),
        ]
        for proxy in PROXIES:
            lines.append(
                f"| {proxy} | clean acc | "
                + " | ".join(f"{rho[(k, proxy, 'clean_accuracy')]:.3f}" for k in KINDS)
                + " |"
            )
        for proxy in ROBUST_PROXIES:
            lines.append(f"| {proxy} | PGD acc | " + " | ".join(f"{rho[(k, proxy, 'pgd')]:.3f}" for k in KINDS) + " |")
        plots = scatter(name, res["rows"], out / "proxy_validity")
        lines += ["", "Scatter plots: " + ", ".join(f"[{p}](proxy_validity/{p})" for p in plots), ""]
    atomic_write_json(out / "proxy_validity.json", payload)
    atomic_write_text(out / "proxy_validity.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
