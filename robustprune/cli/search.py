"""``robustprune search``: the progressive, robustness-scored search; its flags are built from ``SearchConfig``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robustprune.cli import _common as c
from robustprune.cli import _output, recover
from robustprune.cli._config import Flag, add_flags, build, changed, field_default, param_default, values

HELP = "Prune a model by the progressive, robustness-scored Optuna search (no data needed)."
EXAMPLES = """examples:
  robustprune search --model zoo:resnet20 --target-macs 0.5 --out runs/r20
  robustprune search --model zoo:mlp --target-params 0.5 --sampler cmaes --seed 1 --out runs/mlp
  robustprune search --model zoo:cnn --target-macs 0.7 --storage sqlite:///cnn.db --out runs/cnn   # resumable
  robustprune search --model zoo:cnn --target-macs 0.5 --sampler nsga2 --floor fidelity=0.9 --out runs/cnn-mo
  robustprune search --model mypkg.nets:build --weights net.pt --spec net_spec.json --target-macs 0.5 --out runs/net
  robustprune search --model zoo:resnet20 --target-macs 0.5 --storage postgresql://u:pw@db/rp --out runs/r20
      # coordinator: `robustprune worker --storage postgresql://u:pw@db/rp` on other machines adds trials
  robustprune search --model zoo:resnet20 --target-macs 0.5 --round-to 8 --out runs/r20-r8
  robustprune search --model zoo:resnet20 --target-latency 0.5 --latency-batch 256 --out runs/r20-lat"""


#: help of the SearchConfig flags; those that name library constants are completed in ``search_flags``
FLAG_HELP = {
    "target_macs": "fraction of the original MACs to keep, e.g. 0.5",
    "target_params": "fraction of the original parameters to keep",
    "multi_objective": "fidelity and robustness as two objectives",
    "trials": "Optuna trials per step (default %(default)s)",
    "max_increment": "most a group's removed fraction may grow per step (default %(default)s)",
    "probes.synthetic.n": "synthetic probe inputs (default %(default)s)",
    "probes.synthetic.steps": "Adam steps of the synthesis (default %(default)s)",
    "probes.synthetic.batch_size": "synthetic probes made per batch; BN statistics are matched per batch, so it "
    "changes them (default %(default)s; a 224x224 model needs about 21 GiB at 128, see docs/defaults.md)",
    "probes.eps": "L-inf radius of the adversarial probes the search scores on (default %(default)s)",
    "probes.seed": "seed of the probes (default: the --seed)",
    "split_probes": "fit the channel ranking, rescoring and BN re-estimation on one half of the synthetic probes and "
    "score candidates on the other half (docs/defaults.md)",
    "round_to": "keep each group's channels at a multiple of N (or whole), e.g. 8 (default %(default)s: any width)",
    "target_latency": "fraction of the original's latency to keep, measured on this machine (per-layer latency table)",
    "latency_batch": "batch size --target-latency is measured at (default %(default)s)",
    "latency_threads": "torch threads --target-latency is measured with (default: torch's setting)",
    "latency_rounds": "times the found model; where it misses --target-latency by over 5%%, corrects the table by "
    "that timing and prunes on, at most N times (default %(default)s; 0: trust the table)",
}


def search_flags() -> tuple[tuple[Flag, ...], tuple[Flag, ...], tuple[Flag, ...]]:
    """The SearchConfig fields with a flag of their own, in three runs: before --compensation, between it and
    --floor, after --floor (the hand-written flags, whose syntax is the CLI's own)."""
    from robustprune.search.engine import HEDGE_CRITERION, RESCORE_AT_MOST, STEP_FRACTION, STEP_FRACTION_NO_BN

    helps = FLAG_HELP | {
        "steps": f"progressive steps (default: one per {100 * STEP_FRACTION:.0f}%% of the cost, "
        f"{100 * STEP_FRACTION_NO_BN:.0f}%% without BatchNorm)",
        "importance": f"channel ranking inside a group (default auto: with BatchNorm, {HEDGE_CRITERION} (the rank "
        "sum of taylor_synthetic and l1) unless one of those two scores clearly higher on the proxies; "
        "merge_saliency without)",
        "rescore": "rank the channels again on each committed candidate (Taylor criteria only; default auto: "
        f"synthetic when the target keeps at most {100 * RESCORE_AT_MOST:.0f}%% of the cost, else off)",
    }

    def flag(path: str, name: str | None = None, parse=None) -> Flag:
        return Flag(path, name, helps.get(path), parse)

    fraction, count = c.fraction, c.positive_int
    before = (flag("target_macs", parse=fraction), flag("target_params", parse=fraction), flag("sampler"))
    before += (flag("multi_objective"), flag("steps", parse=count), flag("trials", parse=count))
    before += (flag("max_increment"), flag("importance"))
    middle = (flag("rescore"), flag("split_probes"), flag("probes.synthetic.kind", "synthetic"))
    middle += (flag("probes.synthetic.n", "n-probes", count), flag("probes.synthetic.steps", "probe-steps", count))
    middle += (flag("probes.synthetic.batch_size", "probe-batch", count),)
    middle += (flag("probes.eps", "probe-eps", c.eps), flag("probes.seed", "probe-seed"))
    last = (flag("round_to", parse=count), flag("target_latency", parse=fraction))
    last += (flag("latency_batch", parse=count), flag("latency_threads", parse=count))
    last += (flag("latency_rounds", parse=c.count_or_zero), flag("seed"))
    return before, middle, last


def add_parser(add) -> None:
    from robustprune.proxies import PROXIES
    from robustprune.search import SearchConfig
    from robustprune.search.objective import COMPENSATIONS
    from robustprune.search.progressive import ProgressiveSearch

    before, middle, last = search_flags()
    p = add("search", HELP, EXAMPLES)
    c.add_model_args(p, prune=True)
    c.add_exclude_arg(p)
    c.add_input_spec_args(p)
    c.add_eval_data_args(p)
    add_flags(p, SearchConfig, before)
    p.add_argument(
        "--compensation",
        default=field_default(SearchConfig, "compensation")[1],
        help="comma list of " + ",".join(COMPENSATIONS) + ", '' for none, or auto "
        "(default auto: bn with BatchNorm; without, merge, or none with layer, group or instance norms)",
    )
    add_flags(p, SearchConfig, middle)
    p.add_argument(
        "--floor",
        action="append",
        metavar="PROXY=VALUE",
        help="stop before a proxy crosses VALUE (PROXY one of " + ", ".join(PROXIES) + ")",
    )
    add_flags(p, SearchConfig, last)
    p.add_argument(
        "--storage",
        help="Optuna storage to make the search resumable: sqlite:///file.db; postgresql://... or journal:FILE "
        "also lets `robustprune worker` processes on other machines add trials (docs/search.md)",
    )
    p.add_argument(
        "--study",
        default=param_default(ProgressiveSearch, "study_name"),
        help="name of the search in the storage (default %(default)s)",
    )
    p.add_argument(
        "--recover",
        action="store_true",
        help="then distill the pruned model from the original on synthetic inputs (changes weights; see "
        "'robustprune recover')",
    )
    recover.add_config_args(p, prefix="recover-")
    p.add_argument("--recover-checkpoint-dir", help="recovery checkpoints go there; rerun to resume")
    c.add_device_arg(p, "cpu or cuda: where the search and the evaluation run")
    c.add_run_out_args(p, "run folder")
    c.add_report_args(p)
    p.set_defaults(func=run)


def _parse_floors(items: list[str]) -> dict[str, float]:
    floors = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            floors[name] = float(value)
        except ValueError:
            raise c.UsageError(f"--floor takes PROXY=VALUE, got {item!r}") from None
        if not sep:
            raise c.UsageError(f"--floor takes PROXY=VALUE, got {item!r}")
    return floors


def search_config_from_args(args: argparse.Namespace):
    """The SearchConfig of ``robustprune search``: every option not given keeps the library default
    (``SearchConfig`` and its default probes), so equal arguments give the config ``rp.search`` runs."""
    from robustprune.search import SearchConfig

    if args.target_macs is None and args.target_params is None and args.target_latency is None:
        raise c.UsageError(
            "give --target-macs, --target-params and/or --target-latency (fraction of the original to keep)"
        )
    latency_flags = [f for f in search_flags()[2] if f.path in ("latency_batch", "latency_threads", "latency_rounds")]
    stray = changed(args, SearchConfig, latency_flags) if args.target_latency is None else []
    if stray:
        raise c.UsageError(f"{stray[0]} sets how --target-latency is measured: give --target-latency too, or drop it")
    given = {}
    for flags in search_flags():
        given |= values(args, flags)
    compensation = "auto" if args.compensation == "auto" else tuple(x for x in args.compensation.split(",") if x)
    try:
        return build(SearchConfig, given, compensation=compensation, floors=_parse_floors(args.floor))
    except ValueError as exc:
        raise c.UsageError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    from robustprune.models import canonical_ref
    from robustprune.plots import plot_run
    from robustprune.search import search

    config = search_config_from_args(args)
    recover_config = recover.config_from_args(args, prefix="recover-") if args.recover else None
    if not args.recover:
        from robustprune.recover import RecoverConfig

        stray = changed(args, RecoverConfig, recover.CONFIG, "recover-")
        stray += ["--recover-checkpoint-dir"] if args.recover_checkpoint_dir else []
        if stray:
            raise c.UsageError(f"{stray[0]} sets the recovery after the search: give --recover too, or drop it")
    c.check_device(args.device)
    c.check_folder_flag("--recover-checkpoint-dir", args.recover_checkpoint_dir)
    # --recover: the rerun of an interrupted run finds the search it saved before recovering
    out = c.check_run_dir(args, ("search+recover", "search") if args.recover else "search")
    c.check_storage(args.storage)
    c.check_eval_data(args)
    model, spec = c.load_model_from_args(args, prune=True)
    exclude = c.check_exclude(model, args.exclude)
    c.quiet_trial_failures(args)
    result = search(
        model,
        spec,
        config=config,
        storage=args.storage,
        study_name=args.study,
        quiet=args.quiet,
        model_ref=canonical_ref(args.model),  # model files by absolute path: what a worker on a shared disk loads
        weights_ref=str(Path(args.weights).resolve()) if args.weights else None,
        exclude=exclude,
    )

    def write(staging: Path) -> None:
        result.save(staging, model_ref=canonical_ref(args.model))
        plot_run(staging, staging / "plots")

    _output.save_run(args, out, write)  # before recovery: a failed or interrupted recovery keeps the search
    recovered = None
    if args.recover:
        recovered = _recover_search(args, result, model, spec, recover_config, exclude)

        def write_recovered(staging: Path) -> None:
            write(staging)
            recovered.save(staging, model_ref=canonical_ref(args.model))  # replaces the search's pruned.pt

        _output.save_run(args, out, write_recovered)
    final = recovered.model if recovered is not None else result.model
    report = _output.report_for_run(
        final, spec, f"{args.model} (search{' + recover' if recovered else ''})", args, original=model
    )
    report["provenance"].update(method="search", search=result.summary())
    if recovered is not None:
        report["provenance"].update(method="search+recover", stages=["search", "recover"], recover=recovered.summary())
    if config.target_latency is not None:
        report["latency_check"] = _latency_check(model, result, config, args)
    files = "pruned.pt, spec.json, history.json, front.json, report.json, plots/"
    return _output.finish_run(
        args, out, "search", report, files + (", recover.json, recover_loss.png" if recovered else "")
    )


def _recover_search(args: argparse.Namespace, result, model, spec, config, exclude):
    """``search --recover``: distill the search's pruned model from the original (changes its weights)."""
    from robustprune.recover import recover as distill

    if not args.quiet:
        print("recovering the pruned model from the original on synthetic inputs", file=sys.stderr)
    return distill(
        result.model,
        model,
        spec,
        config,
        candidate=result.candidate,
        exclude=exclude,
        device=args.device,
        checkpoint_dir=args.recover_checkpoint_dir,
        quiet=args.quiet,
    )


def _latency_check(model, result, config, args: argparse.Namespace) -> dict:
    """The latency table's prediction for the pruned model against timing it, interleaved with the original."""
    from robustprune.evaluate.latency_check import check_latency_model

    check = check_latency_model(model, result.space, result.candidate, result.model, config)
    if not args.quiet:
        print(
            f"latency at batch {check['batch_size']}: predicted {100 * check['predicted_fraction']:.1f}% of the "
            f"original, measured {100 * check['measured_fraction']:.1f}% (target {100 * config.target_latency:.0f}%; "
            f"table off by {100 * check['relative_error']:+.1f}%)",
            file=sys.stderr,
        )
    return check
