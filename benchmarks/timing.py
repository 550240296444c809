"""Wall times on this machine: scoring a candidate, generating synthetic inputs, a whole search per device,
the cost at ImageNet scale.

    python -m benchmarks.timing proxy [--model resnet20] [--repeats 5]
    python -m benchmarks.timing synthesis [--model resnet20] [--kind inversion] [--n 512] [--steps 200]
    python -m benchmarks.timing search-device [--model resnet20] [--target 0.5] [--devices cpu cuda]
    python -m benchmarks.timing scale [--synthesis-batch 32] [--synthesis-steps 1 4] [--probe-batch 64] [--trials 3]
    python -m benchmarks.timing recover [--model resnet20] [--target 0.5] [--threads 2]

``proxy`` appends a row to results/proxy_time.md: median seconds of BN re-estimation, of the
forward-pass proxies over all probes and of every proxy including attack_robustness (FGSM on 128
synthetic probes), for one candidate (30% of every group removed) on the search's default probes.
``synthesis`` appends a row to results/synthesis_time.md: one uncached generation.
``search-device`` runs the default search (probes from the disk cache, generated first, so only
the search is timed) once per device in one process, and writes results/search_device_time.md
with the wall times, their ratio to the first device, and whether the committed amounts agree
(across devices float rounding may change a tie between trials).
``recover`` appends a row to results/recover_time.md: wall and CPU seconds of ``rp.recover`` with the
shipped RecoverConfig() on the default search's result (seed 0; the search itself is not timed), the
synthetic pool's inversion included and uncached, as a user's ``robustprune recover`` pays them.
``scale`` writes results/scale_time.md: wall time of the prune space, synthesis and one search step for
torchvision's resnet50 at 3x224x224 (random weights, BN statistics randomized; timing only), at the
search's default probe count (256 of each kind, PGD-10), the count results/proxy_validity.md measured.
Synthesis is timed on one batch at two step counts (it is linear in images x steps), and the search's
own synthetic probes get one Adam step (their content does not change what a trial costs); the full
synthesis and a full step are derived from those timings and say so.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time

import torch

from benchmarks._common import RESULTS, append_row, log, median_time, run_study, subcommand_parser
from robustprune import SearchConfig, search, zoo
from robustprune._io import atomic_write_text
from robustprune._provenance import provenance
from robustprune.compensate import bn_reestimate_overrides
from robustprune.criteria import all_scores
from robustprune.models import check_device
from robustprune.probes.cache import cached_generate
from robustprune.probes.probeset import build_probes
from robustprune.probes.synthetic import SyntheticConfig, bn_statistics_loss, generate
from robustprune.proxies import score
from robustprune.recover import RecoverConfig, recover
from robustprune.search.engine import SEARCH_PROBES
from robustprune.select import select_keep
from robustprune.spec import InputSpec
from robustprune.structure import PruneSpace


def proxy_time(args, command: str) -> None:
    model, spec = zoo.load(args.model)
    space = PruneSpace(model, spec)
    probes = build_probes(model, spec, space.output_layer, SEARCH_PROBES)
    candidate = select_keep(space, {g.name: 0.3 for g in space.groups}, scores=all_scores(space, "l1"))
    bn_inputs = spec.normalize(probes.pixels["synthetic"])
    overrides = bn_reestimate_overrides(space, candidate, bn_inputs, batch_size=len(bn_inputs))
    t_bn = median_time(lambda: bn_reestimate_overrides(space, candidate, bn_inputs, len(bn_inputs)), args.repeats)
    t_fwd = median_time(lambda: score(space, probes, candidate, overrides, attack=None), args.repeats)
    t_all = median_time(lambda: score(space, probes, candidate, overrides, attack="fgsm"), args.repeats)
    prov = provenance()
    append_row(
        args.out or RESULTS / "proxy_time.md",
        "# Proxy scoring time per candidate\n\n| model | probes | BN re-estimation (s) | forward-pass "
        "proxies (s) | all proxies incl. FGSM attack_robustness (s) | command | commit | machine |\n"
        "|---|---|---|---|---|---|---|---|\n",
        f"| {args.model} | {len(probes)} | {t_bn:.2f} | {t_fwd:.2f} | {t_all:.2f} | `{command}` | "
        f"`{prov['commit']}` | {prov['machine']} |\n",
    )
    print(f"bn {t_bn:.2f}s, forward proxies {t_fwd:.2f}s, all {t_all:.2f}s on {len(probes)} probes")


def synthesis_time(args, command: str) -> None:
    model, spec = zoo.load(args.model)
    config = SyntheticConfig(kind=args.kind, n=args.n, steps=args.steps)
    begin = time.time()
    result = generate(model, spec, config, progress=log)
    seconds = time.time() - begin
    distance = bn_statistics_loss(model, spec.normalize(result.pixels))
    prov = provenance()
    append_row(
        args.out or RESULTS / "synthesis_time.md",
        "# Synthetic-input generation time\n\nEach row: one run of the command shown, no cache.\n\n"
        "| model | kind | images | Adam steps | batch | seconds | BN-statistics distance | threads | "
        "command | commit | machine |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
        f"| {args.model} | {args.kind} | {args.n} | {args.steps} | {config.batch_size} | {seconds:.0f} | "
        f"{distance:.4f} | {prov['threads']} | `{command}` | `{prov['commit']}` | {prov['machine']} |\n",
    )
    print(f"{seconds:.0f}s")


def search_device_time(args, command: str) -> None:
    for device in args.devices:
        check_device(device)
    model, spec = zoo.load(args.model)
    config = SearchConfig(target_macs=args.target)
    cached_generate(model, spec, config.probe_config.synthetic)  # so no device pays for the synthesis
    rows = []
    for device in args.devices:
        begin = time.time()
        result = search(model.to(device), spec, config=config, quiet=True)
        rows.append((device, time.time() - begin, result.history[-1], result.amounts))
        log(device, f"{rows[-1][1]:.1f}s")
    first = rows[0]
    p = provenance()
    lines = [
        f"# Search wall time per device: {args.model} to {args.target:g} of the original MACs",
        "",
        f"Produced by `{command}` at commit `{p['commit']}` on {p['machine']}; seed 0, default "
        f"search settings, {args.threads} torch CPU threads, probes from the disk cache.",
        "",
        "| device | search s | vs first | kept MACs | fidelity | robust fidelity | same amounts as first |",
        "|---|---|---|---|---|---|---|",
    ]
    for device, seconds, last, amounts in rows:
        lines.append(
            f"| {device} | {seconds:.1f} | {seconds / first[1]:.2f}x | {100 * last.kept_macs:.1f}% "
            f"| {last.proxies['fidelity']:.3f} | {last.proxies['robust_fidelity']:.3f} | {amounts == first[3]} |"
        )
    atomic_write_text(args.out or RESULTS / "search_device_time.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def recover_time(args, command: str) -> None:
    model, spec = zoo.load(args.model)
    result = search(model, spec, config=SearchConfig(target_macs=args.target), quiet=True)
    config = RecoverConfig()
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    recovered = recover(result.model, model, spec, config, candidate=result.candidate, quiet=True)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    prov = provenance()
    append_row(
        args.out or RESULTS / "recover_time.md",
        "# Recovery time with the shipped defaults\n\nEach row: one run of the command shown; the synthetic "
        "pool's inversion is included (uncached). Load: the 1-minute load average at the start.\n\n"
        "| model | target | steps x batch | pool | wall s | of it pool s | CPU s | threads | load | command | "
        "commit | machine |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        f"| {args.model} | {args.target:g} | {config.steps} x {config.batch_size} | {config.pool_size} | {wall:.0f} | "
        f"{recovered.pool_seconds:.0f} | {cpu:.0f} | {prov['threads']} | {load:.2f} | `{command}` | "
        f"`{prov['commit']}` | {prov['machine']} |\n",
    )
    print(f"recover {wall:.0f}s wall ({recovered.pool_seconds:.0f}s pool), {cpu:.0f} CPU s")


#: ImageNet's input: 3x224x224, its normalisation, 1000 classes.
IMAGENET = InputSpec(shape=(3, 224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), num_classes=1000)


def resnet50() -> torch.nn.Module:
    """torchvision's resnet50, random weights (seed 0), BN running statistics randomized: timing only."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def _peak_rss_gib() -> float:
    """The process's peak resident memory so far (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def scale_time(args, command: str) -> None:
    prov = provenance()
    model = resnet50()
    t0 = time.time()
    space = PruneSpace(model, IMAGENET)
    space_s = time.time() - t0

    # Synthesis: one batch at two step counts; the difference is the cost of the extra Adam steps alone.
    b, (s1, s2) = args.synthesis_batch, args.synthesis_steps
    synth_s = {}
    for steps in (s1, s2):
        t0 = time.time()
        generate(model, IMAGENET, SyntheticConfig(n=b, steps=steps, batch_size=b))
        synth_s[steps] = time.time() - t0
    synth_rss = _peak_rss_gib()
    per_image_step = (synth_s[s2] - synth_s[s1]) / ((s2 - s1) * b)
    default = SEARCH_PROBES.synthetic
    synthesis_h = per_image_step * default.n * default.steps / 3600

    # One search step at the search's default probe count; the synthetic probes' content does not change
    # what a trial costs, so they get one Adam step (in batches that fit this machine's memory).
    synthetic = SyntheticConfig(n=default.n, steps=1, batch_size=args.probe_batch)
    probes = dataclasses.replace(SEARCH_PROBES, synthetic=synthetic)
    config = SearchConfig(target_macs=0.9, steps=1, trials=args.trials, probes=probes)
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.time()
        result = search(model, IMAGENET, config=config, cache_dir=cache, quiet=True)
        search_s = time.time() - t0
    search_rss = _peak_rss_gib()
    step_s = result.history[0].seconds
    per_trial = step_s / args.trials
    probe_s = result.probe_seconds
    setup_s = search_s - step_s - sum(probe_s.values())
    default_search = SearchConfig(target_macs=0.5).resolve(space)
    default_trials, n_steps = default_search.trials, default_search.steps
    full_step_min = default_trials * per_trial / 60
    total_h = (space_s + synthesis_h * 3600 + probe_s["adversarial"] + setup_s) / 3600 + n_steps * full_step_min / 60
    lines = [
        "# Cost at ImageNet scale: resnet50 at 224x224 on CPU",
        "",
        f"Produced by `{command.strip()}` at commit `{prov['commit']}` on {prov['machine']}, torch {prov['torch']}, "
        f"seed 0; load average {os.getloadavg()[0]:.2f} at the end. torchvision resnet50, random weights, BN "
        "statistics randomized (timing only). No GPU was lent to this task.",
        "",
        "Measured:",
        "",
        "| phase | setting | seconds |",
        "|---|---|---|",
        f"| prune space (trace, groups, self-check) | {len(space.groups)} groups, {space.full_macs / 1e9:.2f} GMACs | "
        f"{space_s:.0f} |",
        f"| synthetic probes (inversion), one batch | {b} images x {s1} Adam step(s) | {synth_s[s1]:.0f} |",
        f"| the same batch | {b} images x {s2} Adam steps | {synth_s[s2]:.0f} |",
        f"| the search's own probes: synthetic | {default.n} images x 1 Adam step, batches of {args.probe_batch} | "
        f"{probe_s['synthetic']:.0f} |",
        f"| the search's own probes: adversarial | PGD-{SEARCH_PROBES.attack_steps} on {default.n} images | "
        f"{probe_s['adversarial']:.0f} |",
        f"| the search's set-up (its space, channel ranking, criterion choice) | | {setup_s:.0f} |",
        f"| one search step to 0.9 of the MACs | {args.trials} trials at the default probe count | {step_s:.0f} |",
        "",
        f"Peak resident memory: {synth_rss:.1f} GiB after the synthesis batch of {b}, {search_rss:.1f} GiB after "
        "the search (attacks, channel ranking and the probes' forward passes run in chunks sized from one image's "
        "activations, docs/defaults.md).",
        "",
        "Derived (linear in what is counted; not measured end to end):",
        "",
        f"- synthesis: {per_image_step:.3f} s per image per Adam step (the two batch timings' difference), so the "
        f"default {default.n} images x {default.steps} steps take about {synthesis_h:.1f} h here;",
        f"- a trial: {per_trial:.0f} s, so a default step of {default_trials} trials takes about "
        f"{full_step_min:.0f} min;",
        f"- the default search to 0.5 of the MACs ({n_steps} steps): about {total_h:.1f} h on this CPU (space, "
        "synthesis, adversarial probes, set-up and the steps' trials; the channel re-ranking after the deep steps, "
        "one Taylor pass over the probes each, is left out).",
    ]
    atomic_write_text(args.out or RESULTS / "scale_time.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser, sub = subcommand_parser(__doc__)
    p = sub.add_parser("proxy", help="scoring one candidate with every proxy")
    p.add_argument("--repeats", type=int, default=5)
    s = sub.add_parser("synthesis", help="one uncached synthetic-input generation")
    s.add_argument("--kind", default="inversion")
    s.add_argument("--n", type=int, default=512)
    s.add_argument("--steps", type=int, default=200)
    d = sub.add_parser("search-device", help="the default search once per device")
    d.add_argument("--target", type=float, default=0.5)
    d.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    i = sub.add_parser("scale", help="resnet50 at 224x224: prune space, synthesis, one search step")
    i.add_argument("--synthesis-batch", type=int, default=32)
    i.add_argument("--synthesis-steps", type=int, nargs=2, default=[1, 4], metavar=("S1", "S2"))
    i.add_argument("--probe-batch", type=int, default=64, help="synthesis batch of the search's probes")
    i.add_argument("--trials", type=int, default=3)
    r = sub.add_parser("recover", help="rp.recover with the shipped defaults on the default search's result")
    r.add_argument("--target", type=float, default=0.5)
    for q in (p, s, d, r):
        q.add_argument("--model", default="resnet20")
    for q in (p, s, d, i, r):
        q.add_argument("--threads", type=int, default=2)
        q.add_argument("--out", help="output file; default: under results/")
    studies = {"proxy": proxy_time, "synthesis": synthesis_time, "search-device": search_device_time}
    run_study("timing", parser, {**studies, "scale": scale_time, "recover": recover_time}, argv)


if __name__ == "__main__":
    main()
