"""Do the search's data-free proxies predict real accuracy? Three studies over pruned candidates.

    python -m benchmarks.proxy_study validity [--candidates 40] [--models resnet20 cnn] [--eps 0.03]
    python -m benchmarks.proxy_study objective [--model cnn] [--candidates 16]
    python -m benchmarks.proxy_study criterion [--models cnn resnet20 mobilenetv2 vgg11_bn] [--seeds 0] [--pgd 0.01]

``validity``: random candidates (random per-group amounts whose overall MAC reduction is spread over
10%-70%, l1 ranking, BN re-estimated on a separate set of synthetic inputs, as the search does);
every proxy on probe sets of each synthetic kind (gaussian, bn_stats, inversion) against real clean
and PGD accuracy on the test set; Spearman rho and scatter plots. eps 0.03 for the adversarial
probes and the real attack: at 0.1 the zoo models' PGD accuracy is near zero and its ranks are noise.
Writes results/proxy_validity.{md,json} and results/proxy_validity/.

``objective``: the same kind of candidates, the search's default probes; Spearman rho of each proxy
and of a few weightings of the objective against accuracy on the validation split (train[55000:]).
Writes results/tune_objective.md.

``criterion``: with importance "auto" the search scores a uniform candidate at the final target, BN
re-estimated on the probes, with each of Taylor, l1 and their rank sum, and picks one
(``pick_criterion``). Per model, target and probe seed (the full suite's probes), each candidate's
proxy score and validation accuracy, the plain maximum's pick and the search's. Writes
results/criterion_choice.md (or ``--out``).
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib
import torch
from scipy.stats import spearmanr

from benchmarks._common import RESULTS, log, produced_by, run_study, split, subcommand_parser
from robustprune import SearchConfig, zoo
from robustprune._io import atomic_write_json, atomic_write_text
from robustprune._provenance import provenance
from robustprune.bench import load_suite
from robustprune.compensate import apply_overrides, bn_reestimate_overrides
from robustprune.criteria import all_scores
from robustprune.evaluate.attacks import robust_accuracy
from robustprune.evaluate.metrics import accuracy, predict_logits
from robustprune.probes.cache import cached_generate
from robustprune.probes.probeset import ProbeConfig, build_probes
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.proxies import PROXIES, CandidateModule, score
from robustprune.search.engine import AUTO_CRITERIA, HEDGE_MARGIN, SEARCH_PROBES, pick_criterion
from robustprune.search.objective import Evaluator, fit_amounts, weighted_score
from robustprune.select import select_keep, uniform_candidate
from robustprune.structure import PruneSpace, export, masked
from robustprune.targets import Target

KINDS = ("gaussian", "bn_stats", "inversion")
ROBUST_PROXIES = ("robust_fidelity", "attack_robustness")
WEIGHTINGS = {
    "fidelity": {"fidelity": 1.0},
    "fidelity + 0.5 robust_fidelity - 0.25 max(0, open_world)": {
        "fidelity": 1.0,
        "robust_fidelity": 0.5,
        "open_world": 0.25,
    },
    "kl": {"kl": 1.0},
    "fidelity + 0.5 robust_fidelity - 0.1 kl": {"fidelity": 1.0, "robust_fidelity": 0.5, "kl": 0.1},
    "feature_sp": {"feature_sp": 1.0},
    "chosen: fidelity + 0.5 robust_fidelity - 0.1 kl - 0.25 max(0, open_world)": {
        "fidelity": 1.0,
        "robust_fidelity": 0.5,
        "kl": 0.1,
        "open_world": 0.25,
    },
}


def random_amounts(space: PruneSpace, gen: torch.Generator) -> dict[str, float]:
    """Random per-group removal fractions whose overall MAC reduction is uniform in [0.1, 0.7]."""
    reduction = 0.1 + 0.6 * torch.rand(1, generator=gen).item()
    direction = {g.name: torch.rand(1, generator=gen).item() for g in space.groups}
    amounts, feasible = fit_amounts(space, {}, direction, 0.9, Target(macs=1 - reduction), max_amount=0.9)
    if not feasible:  # the direction left too many groups near zero: fall back to uniform
        amounts, _ = fit_amounts(space, {}, {g.name: 1.0 for g in space.groups}, 0.9, Target(macs=1 - reduction))
    return amounts


def masked_accuracy(space: PruneSpace, candidate, overrides, x, y) -> float:
    """Accuracy of the candidate (with its compensation ``overrides``) without building the pruned model."""
    with masked(space, candidate):
        return accuracy(predict_logits(CandidateModule(space.model, overrides), space.spec, x), y)


def spearman(values, real, better: str = "max") -> float:
    """Spearman rho, signed so that a useful proxy is positive."""
    return (1 if better == "max" else -1) * spearmanr(values, real)[0]


# -- validity ------------------------------------------------------------------------------------------
def validity_model(name: str, args) -> dict:
    model, spec = zoo.load(name)
    space = PruneSpace(model, spec)
    x_test, y_test, x_att, y_att = split("test", seed=args.seed)
    probesets, gen_seconds = {}, {}
    for kind in KINDS:
        synthetic = SyntheticConfig(kind=kind, n=args.n_probes, steps=args.probe_steps, seed=args.seed)
        begin = time.time()
        probesets[kind] = build_probes(
            model, spec, space.output_layer, ProbeConfig(synthetic=synthetic, eps=args.eps, seed=args.seed), log
        )
        gen_seconds[kind] = time.time() - begin
    calibration = cached_generate(
        model, spec, SyntheticConfig(kind="inversion", n=args.n_probes, steps=args.probe_steps, seed=args.seed + 1)
    ).pixels
    scores = all_scores(space, "l1")
    gen = torch.Generator().manual_seed(args.seed)
    rows = []
    for i in range(args.candidates):
        amounts = random_amounts(space, gen)
        candidate = select_keep(space, amounts, scores=scores)
        overrides = bn_reestimate_overrides(space, candidate, spec.normalize(calibration), batch_size=len(calibration))
        row = {"kept_macs": space.cost(candidate)[0] / space.full_macs, "amounts": amounts}
        row["proxies"] = {kind: score(space, p, candidate, overrides, attack="fgsm") for kind, p in probesets.items()}
        row["clean_accuracy"] = masked_accuracy(space, candidate, overrides, x_test, y_test)
        with masked(space, candidate):
            module = CandidateModule(space.model, overrides)
            row["pgd"] = robust_accuracy(module, spec, x_att, y_att, attack="pgd", eps=args.eps, seed=args.seed)
        rows.append(row)
        log(f"{name} {i + 1}/{args.candidates}: MACs {row['kept_macs']:.3f} clean {row['clean_accuracy']:.4f}")
    return {"rows": rows, "generation_seconds": gen_seconds}


def scatter(name: str, rows: list[dict], proxy: str, real: str, directory: Path) -> str:
    """One proxy against one real metric over the candidates, a marker per probe kind; returns the file name."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(3.5, 2.6))
    for kind, marker in zip(KINDS, "o^s", strict=True):
        xs, ys = [r["proxies"][kind][proxy] for r in rows], [100 * r[real] for r in rows]
        ax.scatter(xs, ys, s=10, marker=marker, label=kind, alpha=0.8)
    ax.set_xlabel(f"{proxy} ({'higher' if PROXIES[proxy][1] == 'max' else 'lower'} is better)")
    ax.set_ylabel("real clean accuracy (%)" if real == "clean_accuracy" else "real PGD robust accuracy (%)")
    ax.set_title(name, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, frameon=False)
    path = directory / f"{name}_{proxy}_vs_{real}.png"
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return path.name


def validity(args, command: str) -> None:
    out = Path(args.out or RESULTS)
    prov = provenance(seed=args.seed)
    lines = [
        "# Do the proxies predict real accuracy and robustness?",
        "",
        f"{produced_by(command, seed=args.seed)}.",
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
    payload = {"command": command, "provenance": prov, "models": {}}
    for name in args.models:
        res = validity_model(name, args)
        rows = res["rows"]
        rho = {}
        for kind in KINDS:
            for proxy, (_, better) in PROXIES.items():
                values = [r["proxies"][kind][proxy] for r in rows]
                rho[(kind, proxy, "clean_accuracy")] = spearman(values, [r["clean_accuracy"] for r in rows], better)
                if proxy in ROBUST_PROXIES:
                    rho[(kind, proxy, "pgd")] = spearman(values, [r["pgd"] for r in rows], better)
        payload["models"][name] = {**res, "spearman": {"|".join(k): v for k, v in rho.items()}}
        clean, pgd = [r["clean_accuracy"] for r in rows], [r["pgd"] for r in rows]
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
        pairs = [(p, "clean_accuracy") for p in PROXIES] + [(p, "pgd") for p in ROBUST_PROXIES]
        plots = [scatter(name, rows, proxy, real, out / "proxy_validity") for proxy, real in pairs]
        lines += ["", "Scatter plots: " + ", ".join(f"[{p}](proxy_validity/{p})" for p in plots), ""]
    atomic_write_json(out / "proxy_validity.json", payload)
    atomic_write_text(out / "proxy_validity.md", "\n".join(lines) + "\n")


# -- objective -----------------------------------------------------------------------------------------
def objective(args, command: str) -> None:
    model, spec = zoo.load(args.model)
    space = PruneSpace(model, spec)
    x_val, y_val, _, _ = split("val")
    probes = build_probes(model, spec, space.output_layer, SEARCH_PROBES)
    bn_inputs = spec.normalize(probes.pixels["synthetic"])
    scores = all_scores(space, "l1")
    gen = torch.Generator().manual_seed(args.seed)
    rows = []
    for i in range(args.candidates):
        candidate = select_keep(space, random_amounts(space, gen), scores=scores)
        overrides = bn_reestimate_overrides(space, candidate, bn_inputs, batch_size=len(bn_inputs))
        proxies = score(space, probes, candidate, overrides, attack=None)
        rows.append((proxies, masked_accuracy(space, candidate, overrides, x_val, y_val)))
        log(f"candidate {i + 1}: val acc {rows[-1][1]:.4f}, fidelity {proxies['fidelity']:.3f}")
    val = [v for _, v in rows]
    lines = [
        "# Choosing the search objective on the validation split",
        "",
        f"{produced_by(command)}; model {args.model}, {args.candidates} random candidates (10%-70% MAC "
        "reduction, l1, BN re-estimated on the search's synthetic probes), accuracy on train[55000:] "
        "(never trained on, never the test set).",
        "",
        "| objective | Spearman rho vs validation accuracy |",
        "|---|---|",
    ]
    for proxy, (_, better) in PROXIES.items():
        if proxy != "attack_robustness":
            lines.append(f"| {proxy} | {spearman([p[proxy] for p, _ in rows], val, better):.3f} |")
    for name, weights in WEIGHTINGS.items():
        lines.append(f"| objective: {name} | {spearman([weighted_score(p, weights) for p, _ in rows], val):.3f} |")
    atomic_write_text(args.out or RESULTS / "tune_objective.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


# -- criterion -----------------------------------------------------------------------------------------
def criterion_cells(space, probes, inputs, scoring, target: float, seed: int, pgd_eps, data) -> dict:
    """Per criterion of ``AUTO_CRITERIA``: (proxy score, validation accuracy, PGD or None) of its uniform candidate."""
    x_val, y_val, x_att, y_att = data
    config = SearchConfig(target_macs=target)
    cells = {}
    for criterion in AUTO_CRITERIA:
        scores = all_scores(space, criterion, inputs=inputs, seed=seed)
        evaluator = Evaluator(space, scoring, scores, ("bn",), bn_pixels=probes.pixels["synthetic"])
        candidate = uniform_candidate(space, config.target, scores)  # as the search's criterion choice does
        candidate, overrides, proxies = evaluator.evaluate_candidate(candidate)
        val = masked_accuracy(space, candidate, overrides, x_val, y_val)
        pgd = None
        if pgd_eps:
            pruned = export(space, candidate, model=apply_overrides(space.model, overrides))
            pgd = robust_accuracy(pruned, space.spec, x_att, y_att, attack="pgd", eps=pgd_eps, steps=10)
        cells[criterion] = (weighted_score(proxies, config.weights), val, pgd)
    return cells


def criterion(args, command: str) -> None:
    data = split("val")
    held_out = (
        " Held out: Taylor computed on the first half of the synthetic probes, the proxies measured "
        "on the other half (with its adversarial versions)."
        if args.held_out
        else ""
    )
    pgd_head = (
        f" val PGD (eps {args.pgd:g}): " + " / ".join(AUTO_CRITERIA) + " | better on val PGD |" if args.pgd else ""
    )
    lines = [
        "# Data-free choice of the pruning criterion vs validation accuracy",
        "",
        f"{produced_by(command)}; per seed the search's default probes as the full suite builds them for that "
        "seed. Uniform candidates (the same fraction from every group, channels given back until just under the "
        f"target), BN re-estimated on the probes; validation = train[55000:].{held_out}",
        "",
        "| model | target (MACs) | seed | "
        + " | ".join(f"{c} proxy score / val acc" for c in AUTO_CRITERIA)
        + f" | maximum picks | search picks (margin {HEDGE_MARGIN:g}) | better on validation |{pgd_head}",
        "|---|---|---|" + "---|" * len(AUTO_CRITERIA) + "---|---|---|" + ("---|---|" if args.pgd else ""),
    ]
    agree = agree_hedge = agree_pgd = 0
    picked: dict[str, list[float]] = {"maximum": [], "search": [], "best": []}
    suite = load_suite("full")
    for name in args.models:
        model, spec = zoo.load(name)
        space = PruneSpace(model, spec)
        for seed in args.seeds:
            probes = build_probes(model, spec, space.output_layer, suite.search_config("macs", 0.5, seed).probe_config)
            n_syn = len(probes.pixels["synthetic"])
            inputs, scoring = probes.inputs()[:n_syn], probes
            if args.held_out:
                inputs, scoring = inputs[: n_syn // 2], probes.split(n_syn // 2)[1]
            for target in args.targets:
                cells = criterion_cells(space, probes, inputs, scoring, target, seed, args.pgd, data)
                pick = max(AUTO_CRITERIA, key=lambda c: (cells[c][0], -AUTO_CRITERIA.index(c)))
                hedged = pick_criterion({c: cells[c][0] for c in AUTO_CRITERIA})
                best = max(AUTO_CRITERIA, key=lambda c: cells[c][1])
                agree, agree_hedge = agree + (pick == best), agree_hedge + (hedged == best)
                for rule, choice in (("maximum", pick), ("search", hedged), ("best", best)):
                    picked[rule].append(cells[choice][1])
                row = (
                    f"| {name} | {target:g} | {seed} | "
                    + " | ".join(f"{cells[c][0]:.4f} / {100 * cells[c][1]:.2f}%" for c in AUTO_CRITERIA)
                    + f" | {pick} | {hedged} | {best} |"
                )
                if args.pgd:
                    best_pgd = max(AUTO_CRITERIA, key=lambda c: cells[c][2])
                    agree_pgd += hedged == best_pgd
                    row += " " + " / ".join(f"{100 * cells[c][2]:.1f}%" for c in AUTO_CRITERIA) + f" | {best_pgd} |"
                lines.append(row)
                log(row)
    total = len(args.models) * len(args.targets) * len(args.seeds)
    mean = {k: 100 * sum(v) / len(v) for k, v in picked.items()}
    lines += [
        "",
        f"The search's pick is the better criterion on validation in {agree_hedge} of {total} cases "
        f"(the plain maximum's: {agree}). Mean validation accuracy of the picked candidate: search "
        f"{mean['search']:.2f}%, plain maximum {mean['maximum']:.2f}%, the best of the three {mean['best']:.2f}%.",
        "",
    ]
    if args.pgd:
        lines += [
            f"On validation PGD (eps {args.pgd:g}) the search's pick is the better one in {agree_pgd} of {total}.",
            "",
        ]
    atomic_write_text(args.out or RESULTS / "criterion_choice.md", "\n".join(lines))
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser, sub = subcommand_parser(__doc__)
    v = sub.add_parser("validity", help="proxies vs real test accuracy over random candidates")
    v.add_argument("--models", nargs="+", default=["resnet20", "cnn"])
    v.add_argument("--candidates", type=int, default=40)
    v.add_argument("--eps", type=float, default=0.03)
    v.add_argument("--n-probes", type=int, default=256)
    v.add_argument("--probe-steps", type=int, default=100)
    o = sub.add_parser("objective", help="proxies and objective weightings vs validation accuracy")
    o.add_argument("--model", default="cnn")
    o.add_argument("--candidates", type=int, default=16)
    c = sub.add_parser("criterion", help="the search's data-free criterion choice vs validation accuracy")
    c.add_argument("--models", nargs="+", default=["cnn", "resnet20", "mobilenetv2", "vgg11_bn"])
    c.add_argument("--targets", nargs="+", type=float, default=[0.7, 0.5])
    c.add_argument("--seeds", nargs="+", type=int, default=[0], help="probe seeds (as the full suite's cells)")
    c.add_argument("--held-out", action="store_true", help="Taylor on half the synthetic probes, proxies on the rest")
    c.add_argument("--pgd", type=float, metavar="EPS", help="also PGD accuracy (10 steps) at EPS on 1,000 images")
    for p in (v, o):
        p.add_argument("--seed", type=int, default=0)
    for p in (v, o, c):
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--out", help="output file (a folder for validity); default: under results/")
    run_study("proxy_study", parser, {"validity": validity, "objective": objective, "criterion": criterion}, argv)


if __name__ == "__main__":
    main()
