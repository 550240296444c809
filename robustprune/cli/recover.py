"""``robustprune recover``: distill a pruned run from its original on synthetic inputs (opt-in; changes weights).

Its RecoverConfig flags also serve ``search --recover`` (as --recover-NAME)."""

from __future__ import annotations

import argparse

from robustprune.cli import _common as c
from robustprune.cli import _output
from robustprune.cli._config import Flag, add_flags, build, field_default, values

HELP = "Distill a pruned run folder from its original on synthetic inputs only (changes weights; opt-in)."
EXAMPLES = """examples:
  robustprune recover runs/r20 --out runs/r20-recovered                  # zoo originals load by name
  robustprune recover runs/mine --out runs/mine-rec --original mypkg.nets:build --weights net.pt --allow-code
  robustprune recover runs/r20 --out runs/r20-rec --checkpoint-dir ckpt   # rerun the same line to resume"""

#: help of RUN, --out and --original
SOURCE_HELP = (
    "run folder with spec.json and pruned.pt (from search or baseline)",
    "new run folder: pruned.pt, spec.json, recover.json, report.json",
    "the unpruned model (default: the model the run folder names)",
)
#: RecoverConfig fields with a flag of their own
CONFIG = (
    Flag("steps", type=c.positive_int, help="training steps (default %(default)s)"),
    Flag("batch_size", type=c.positive_int, help="default %(default)s"),
    Flag("pool_size", type=c.positive_int, help="synthetic images (default %(default)s)"),
    Flag(
        "synthetic.steps",
        flag="synthesis-steps",
        type=c.positive_int,
        help="Adam steps inverting each pool image (default %(default)s)",
    ),
    Flag("lr", type=c.positive_float, help="peak learning rate (SGD, cosine; default %(default)s)"),
    Flag(
        "feature_weight",
        type=c.nonnegative_float,
        help="weight of the feature-map matching loss, 0 = logits only (default %(default)s)",
    ),
    Flag("expand", type=c.positive_int, help="linear over-parameterization factor, 1 = off (default %(default)s)"),
    Flag(
        "features",
        type=c.feature_layers,
        help="layers whose outputs the pruned model learns to match: auto (block outputs; else BatchNorms; else "
        "every conv and linear but the last), none, or a comma list of module names (default %(default)s)",
    ),
    Flag(
        "adv_fraction",
        type=c.share,
        help="share of each batch replaced by PGD inputs against the original (default %(default)s)",
    ),
)


def add_config_args(p: argparse.ArgumentParser, prefix: str = "") -> None:
    from robustprune.recover import RecoverConfig

    add_flags(p, RecoverConfig, CONFIG, prefix)


def config_from_args(args: argparse.Namespace, prefix: str = ""):
    """The RecoverConfig of ``recover`` (``prefix`` "") or of ``search --recover`` (``prefix`` "recover-")."""
    from robustprune.recover import RecoverConfig

    try:
        return build(RecoverConfig, values(args, CONFIG, prefix), seed=args.seed)
    except ValueError as exc:
        raise c.UsageError(str(exc)) from exc


def add_parser(add) -> None:
    from robustprune.recover import RecoverConfig

    p = add("recover", HELP, EXAMPLES)
    c.add_source_run_args(p, *SOURCE_HELP)
    add_config_args(p)
    p.add_argument(
        "--seed", type=int, default=field_default(RecoverConfig, "seed")[1], help="training and evaluation seed"
    )
    p.add_argument("--checkpoint-dir", help="write checkpoints there and resume from them")
    c.add_device_arg(p, "cpu or cuda: where to train and evaluate")
    c.add_eval_data_args(p)
    c.add_report_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustprune.recover import recover
    from robustprune.structure.persist import candidate_of

    config = config_from_args(args)
    c.check_device(args.device)
    c.check_folder_flag("--checkpoint-dir", args.checkpoint_dir)
    source, out, pruned, spec, data = c.open_source_run(args, "recover")
    reference, original = c.load_original(args, source, data, spec)
    candidate = candidate_of(data)
    result = recover(
        pruned,
        original,
        spec,
        config,
        candidate=candidate,
        exclude=tuple(data.get("exclude", ())),
        device=args.device,
        checkpoint_dir=args.checkpoint_dir,
        quiet=args.quiet,
    )
    _output.save_run(args, out, lambda staging: result.save(staging, model_ref=data.get("model")))
    # evaluated where it was trained (--device): both come back on the device they were loaded on, the CPU
    recovered, original = result.model.to(args.device), original.to(args.device)
    report = _output.report_for_run(recovered, spec, f"{reference} (recovered)", args, original=original)
    report["provenance"].update(method="recover", source=str(source), recover=result.summary())
    return _output.finish_run(
        args, out, "recovered", report, "pruned.pt, spec.json, recover.json, recover_loss.png, report.json"
    )
