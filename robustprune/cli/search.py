"""``robustprune search``: the progressive, robustness-scored search; its flags are built from ``SearchConfig``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robustprune.cli import _common as c
from robustprune.cli import _output, recover
from robustprune.cli._config import Flag, add_flags, build, field_default, param_default, values

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


def search_flags() -> tuple[tuple[Flag, ...], tuple[Flag, ...], tuple[Flag, ...]]:
    """The SearchConfig fields with a flag of their own, in three runs: before --compensation, between it and
    --floor, after --floor (the hand-written flags, whose syntax is the CLI's own)."""
    from robustprune.search.engine import HEDGE_CRITERION, RESCORE_AT_MOST, STEP_FRACTION, STEP_FRACTION_NO_BN

    steps_help = (
        f"progressive steps (default: one per {100 * STEP_FRACTION:.0f}%% of the cost, "
        f"{100 * STEP_FRACTION_NO_BN:.0f}%% without BatchNorm)"
    )
    before = (
        Flag("target_macs", type=c.fraction, help="fraction of the original MACs to keep, e.g. 0.5"),
        Flag("target_params", type=c.fraction, help="fraction of the original parameters to keep"),
        Flag("sampler"),
        Flag("multi_objective", help="fidelity and robustness as two objectives"),
        Flag("steps", type=c.positive_int, help=steps_help),
        Flag("trials", type=c.positive_int, help="Optuna trials per step (default %(default)s)"),
        Flag("max_increment", help="most a group's removed fraction may grow per step (default %(default)s)"),
        Flag(
            "importance",
            help=f"channel ranking inside a group (default auto: with BatchNorm, {HEDGE_CRITERION} (the rank sum of "
            "taylor_synthetic and l1) unless one of those two scores clearly higher on the proxies; merge_saliency "
            "without)",
        ),
    )
    middle = (
        Flag(
            "rescore",
            help="rank the channels again on each committed candidate (Taylor criteria only; default auto: "
            f"synthetic when the target keeps at most {100 * RESCORE_AT_MOST:.0f}%% of the cost, else off)",
        ),
        Flag("probes.synthetic.kind", flag="synthetic"),
        Flag(
            "probes.synthetic.n",
            flag="n-probes",
            type=c.positive_int,
            help="synthetic probe inputs (default %(default)s)",
        ),
        Flag(
            "probes.synthetic.steps",
            flag="probe-steps",
            type=c.positive_int,
            help="Adam steps of the synthesis (default %(default)s)",
        ),
        Flag(
            "probes.eps",
            flag="probe-eps",
            type=c.eps,
            help="L-inf radius of the adversarial probes the search scores on (default %(default)s)",
        ),
        Flag("probes.seed", flag="probe-seed", help="seed of the probes (default: the --seed)"),
    )
    last = (
        Flag(
            "round_to",
            type=c.positive_int,
            help="keep each group's channels at a multiple of N (or whole), e.g. 8 (default %(default)s: any width)",
        ),
        Flag(
            "target_latency",
            type=c.fraction,
            help="fraction of the original's latency to keep, measured on this machine (per-layer latency table)",
        ),
        Flag(
            "latency_batch",
            type=c.positive_int,
            help="batch size --target-latency is measured at (default %(default)s)",
        ),
        Flag(
            "latency_threads",
            type=c.positive_int,
            help="torch threads --target-latency is measured with (default: torch's setting)",
        ),
        Flag("seed"),
    )
    return before, middle, last


def add_parser(add) -> None:
    from robustprune.proxies import PROXIES
    from robustprune.search import SearchConfig, search
    from robustprune.search.objective import COMPENSATIONS

    before, middle, last = search_flags()
    p = add("search", HELP, EXAMPLES)
    c.add_model_args(p)
    c.add_input_spec_args(p)
    c.add_eval_data_args(p)
    add_flags(p, SearchConfig, before)
    p.add_argument(
        "--compensation",
        default=field_default(SearchConfig, "compensation")[1],
        help="comma list of " + ",".join(COMPENSATIONS) + ", '' for none, or auto "
        "(default: bn with BatchNorm, merge without)",
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
        default=param_default(search, "study_name"),
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
    c.check_device(args.device)
    out = c.check_run_dir(args, "search+recover" if args.recover else "search")
    c.check_storage(args.storage)
    c.check_eval_data(args)
    model, spec = c.load_model_from_args(args, prune=True)
    c.quiet_trial_failures(args)
    result = search(
        model, spec, config=config, storage=args.storage, study_name=args.study, quiet=args.quiet, model_ref=args.model
    )
    recovered = _recover_search(args, result, model, spec, recover_config) if args.recover else None

    def write(staging: Path) -> None:
        result.save(staging, model_ref=canonical_ref(args.model))
        plot_run(staging, staging / "plots")
        if recovered is not None:  # the recovered weights replace the search's pruned.pt
            recovered.save(staging, model_ref=canonical_ref(args.model))

    _output.save_run(args, out, write)
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


def _recover_search(args: argparse.Namespace, result, model, spec, config):
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
        device=args.device,
        checkpoint_dir=args.recover_checkpoint_dir,
        quiet=args.quiet,
    )


def _latency_check(model, result, config, args: argparse.Namespace) -> dict:
    """The latency table's prediction for the pruned model against timing it, interleaved with the original."""
    from robustprune.evaluate.lut import check_latency_model

    check = check_latency_model(model, result.space, result.candidate, result.model, config)
    if not args.quiet:
        print(
            f"latency at batch {check['batch_size']}: predicted {100 * check['predicted_fraction']:.1f}% of the "
            f"original, measured {100 * check['measured_fraction']:.1f}% (target {100 * config.target_latency:.0f}%; "
            f"table off by {100 * check['relative_error']:+.1f}%)",
            file=sys.stderr,
        )
    return check
