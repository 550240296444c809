"""``robustprune export``: a pruned run folder as a deployable model file."""

from __future__ import annotations

import argparse
from pathlib import Path

from robustprune.cli import _common as c
from robustprune.cli._config import param_default

HELP = "Turn a pruned run folder into a model file: TorchScript, torch.export, ONNX or a state dict."
EXAMPLES = """examples:
  robustprune export runs/r20 --format torchscript --out r20.ts
  robustprune export runs/r20 --format torch-export --out r20.pt2
  robustprune export --spec runs/r20/spec.json --weights runs/r20/pruned.pt --format state_dict --out r20_state.pt"""


def add_parser(add) -> None:
    from robustprune.deploy import FORMATS, save_model

    p = add("export", HELP, EXAMPLES)
    p.add_argument("run", nargs="?", help="run folder with spec.json and pruned.pt")
    p.add_argument("--spec", help="spec.json (instead of a run folder)")
    p.add_argument("--weights", help="pruned.pt next to --spec")
    p.add_argument(
        "--format",
        default=param_default(save_model, "fmt"),
        choices=FORMATS,
        help="onnx needs the onnx extra and is checked against the model with ONNX Runtime (default %(default)s)",
    )
    p.add_argument("--allow-pickle", action="store_true")
    p.add_argument(
        "--allow-code",
        action="store_true",
        help="let a run folder whose spec names package.module:factory import and run it (trusted folders only)",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustprune._io import atomic_write_json
    from robustprune.deploy import save_model
    from robustprune.quantize.run import is_quantized_run
    from robustprune.structure import load_pruned

    if args.run and (args.spec or args.weights):
        raise c.UsageError("give the run folder or --spec/--weights, not both")
    if args.run:
        source = Path(args.run)
    elif args.spec and args.weights:
        spec_file, weights_file = Path(args.spec), Path(args.weights)
        if (
            spec_file.resolve().parent != weights_file.resolve().parent
            or spec_file.name != "spec.json"
            or weights_file.name != "pruned.pt"
        ):
            raise c.UsageError(
                "--spec and --weights must be spec.json and pruned.pt of one folder (or give the folder)"
            )
        source = spec_file.parent
    else:
        raise c.UsageError("give a run folder, or --spec spec.json --weights pruned.pt")
    c.check_run_source(source)
    if is_quantized_run(source):
        raise c.UsageError(
            f"{source} is an int8 run: its int8.pt2 is already the deployable torch.export program "
            "(load it with robustprune.quantize.load_quantized); export takes float run folders"
        )
    out = c.check_output_path(args.out)
    sidecar = out.with_name(out.name + ".inputspec.json")
    for path in (out, sidecar):
        if path.exists() and not args.overwrite:
            raise c.UsageError(f"{path} exists; give --overwrite to replace it, or choose another --out")
    if out.resolve().parent == source.resolve() and out.name in c.RUN_FILES:
        raise c.UsageError(f"{out} is a file of the run folder being exported; choose another --out")
    model, spec, _data = load_pruned(source, allow_pickle=args.allow_pickle, trust_code=args.allow_code)
    save_model(model, spec, out, args.format)
    atomic_write_json(sidecar, spec.to_dict())
    if not args.quiet:
        print(f"wrote {out} ({args.format}) and {out.name}.inputspec.json")
    return 0
