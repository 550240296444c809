"""Delivered speed: pruned against original, per zoo model, target, batch size, thread count and backend.

    python -m benchmarks.latency [--models ...] [--targets 0.7 0.5 0.3] [--batches 1 256] [--threads 1 2]
                                 [--backends eager channels_last torchscript compile onnx] [--runs 50]
                                 [--search-missing] [--round-to 8] [--int8] [--profile] [--out results/latency.md]

Each cell times the original and the pruned model interleaved (A B, B A, ...: both see the same machine
state; robustprune.evaluate.speed), ``--runs`` rounds after warm-up, and reports the medians, IQRs,
the speed-up and the speed-up over the MAC reduction (1.0: latency falls as fast as MACs do).
Backends: fp32 eager, eager on channels-last memory, TorchScript traced + frozen + optimized for
inference, torch.compile (inductor), and ONNX Runtime on the CPU (``robustprune export --format onnx``'s
file, its outputs checked against the model's). Pruned models are the search's run folders: the
validation ablation's (``--models-dir``, ``<model>__search__<target>__s<seed>``) where they exist,
else this benchmark's own (``<out dir>/latency/models``), else a search run here with
``--search-missing`` (``--search-trials`` per step; default the library's); ``--search-only`` runs just
those searches, which need no quiet machine, so the timing run that follows finds them. ``--round-to N`` adds the
same search with kept widths in multiples of N, with both models' clean top-1 on the validation split.
``--int8`` adds, at batch 256 and 2 threads, the pruned model quantized to int8 (synthetic calibration,
compiled with inductor) against the fp32 original. ``--profile`` profiles one cell with torch.profiler.

Every cell is saved as JSON under ``<out dir>/latency/cells`` (with its command, commit, machine and load
average) and skipped when rerun: the run resumes. The report lists the commits its cells came from, adds
the hand-written notes in ``<out dir>/latency/notes.md`` (which runs made which cells, caveats; no number
that a cell does not hold) and the last ``--profile`` output (``<out dir>/latency/profile.md``), so
``--report-only`` rebuilds the whole file. Timings need a quiet machine (no other jobs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from robustprune import zoo
from robustprune._io import atomic_write_json, atomic_write_text
from robustprune._provenance import provenance, short_commit
from robustprune.evaluate.cost import count_macs_params
from robustprune.evaluate.speed import BACKENDS, compile_for, interleaved_latency, torch_threads

RESULTS = Path(__file__).resolve().parent.parent / "results"
ABLATION_MODELS = RESULTS / "ablation_val" / "models"  # the validation ablation's run folders (not in git)


def _cell_id(*parts) -> str:
    return "__".join(str(p) for p in parts)


def _cell_path(
    cells_dir: Path,
    model: str,
    target: float,
    round_to: int,
    batch: int,
    threads: int,
    backend: str,
    method: str,
    seed: int = 0,
) -> Path:
    """Where one timing cell is saved (a rerun skips it); seed 0 keeps the names of the first cells."""
    parts = [model, f"{target:g}", f"r{round_to}", f"b{batch}", f"t{threads}", backend, method]
    name = _cell_id(*parts, *([f"s{seed}"] if seed else []))
    return cells_dir / f"{name}.json"


def _weights_digest(folder: Path) -> str:
    """A short hash of a run folder's weights: a saved cell is reused only for the same pruned model."""
    return hashlib.sha256((folder / "pruned.pt").read_bytes()).hexdigest()[:12]


def _stale(cell: dict, args) -> bool:
    """Whether a saved cell timed another pruned model than the one this run would time (e.g. another --models-dir)."""
    if args.report_only or "weights" not in cell:  # cells written before the digest was recorded are kept
        return False
    folder, _ = _pruned_model(args, cell["model"], cell["target"], cell["round_to"], search=False)
    return folder is not None and _weights_digest(folder) != cell["weights"]


def _onnx_runner(model, spec, batch: int, threads: int, workdir: Path):
    """An ONNX Runtime CPU session on the model's exported file (checked against the model when written)."""
    import numpy as np
    import onnxruntime as ort

    from robustprune.deploy import save_model

    path = workdir / f"m{id(model)}.onnx"
    save_model(model, spec, path, "onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.zeros((batch, *spec.shape), dtype=np.float32)
    return lambda: session.run(None, {name: x})


def _runner(model, spec, batch: int, threads: int, backend: str, workdir: Path):
    if backend == "onnx":
        return _onnx_runner(model, spec, batch, threads, workdir)
    return compile_for(model, spec, batch, backend)


def _int8_runner(model, spec, original, batch: int, seed: int):
    """The model quantized to int8 (synthetic calibration), compiled by inductor (oneDNN int8 kernels)."""
    import torch._inductor.config as inductor_config

    from robustprune.quantize import quantize_int8
    from robustprune.quantize.run import calibration_inputs

    program = quantize_int8(model, spec, calibration_inputs("synthetic", original, spec, seed=seed))
    inductor_config.freezing = True
    compiled = torch.compile(program.module(), dynamic=False)  # a dynamic batch fails in inductor's qconv lowering
    x = torch.zeros(batch, *spec.shape)

    def run():
        with torch.no_grad():
            return compiled(x)

    return run


def _find_pruned(model_name: str, method: str, target: float, seed: int, dirs: list[Path]) -> Path | None:
    for base in dirs:
        folder = base / _cell_id(model_name, method, f"{target:g}", f"s{seed}")
        if (folder / "spec.json").is_file() and (folder / "pruned.pt").is_file():
            return folder
    return None


def _search_pruned(model_name: str, target: float, seed: int, round_to: int, trials: int | None, out: Path) -> Path:
    import robustprune as rp

    model, spec = zoo.load(model_name)
    config = rp.SearchConfig(target_macs=target, seed=seed, round_to=round_to, **({"trials": trials} if trials else {}))
    print(f"searching {model_name} to {target:g} of the MACs (round_to {round_to}) ...", flush=True)
    result = rp.search(model, spec, config=config, quiet=True)
    result.save(out, model_ref=f"zoo:{model_name}")
    return out


def _pruned_model(args, model_name: str, target: float, round_to: int, search: bool = True) -> tuple[Path | None, str]:
    method = args.method if round_to == 1 else f"{args.method}_r{round_to}"
    own = Path(args.cells).parent / "models"
    folder = _find_pruned(model_name, method, target, args.seed, [Path(args.models_dir), own])
    if folder is None and search and args.search_missing and args.method == "search":
        destination = own / _cell_id(model_name, method, f"{target:g}", f"s{args.seed}")
        try:
            folder = _search_pruned(model_name, target, args.seed, round_to, args.search_trials, destination)
        except ValueError as exc:  # e.g. a model the prune space does not support yet: listed as missing
            print(f"search of {model_name} at {target:g} failed: {type(exc).__name__}: {exc}", flush=True)
    return folder, method


def _val_accuracy(model, spec) -> float:
    from robustprune.data.fashion_mnist import load_eval_split
    from robustprune.evaluate.metrics import accuracy, predict_logits

    x, y = load_eval_split("val")
    return accuracy(predict_logits(model, spec, x), y)


def _measure_cell(args, model_name, target, round_to, batch, threads, backend, workdir) -> dict | None:
    from robustprune.structure import load_pruned

    folder, method = _pruned_model(args, model_name, target, round_to)
    if folder is None:
        return None
    original, spec = zoo.load(model_name)
    pruned, _, data = load_pruned(folder)
    with torch_threads(threads):
        if backend == "int8":
            runners = {
                "original": compile_for(original, spec, batch, "eager"),
                "pruned": _int8_runner(pruned, spec, original, batch, args.seed),
            }
        else:
            runners = {
                "original": _runner(original, spec, batch, threads, backend, workdir),
                "pruned": _runner(pruned, spec, batch, threads, backend, workdir),
            }
        stats = interleaved_latency(runners, runs=args.runs, warmup=args.warmup)
    macs_o, _ = count_macs_params(original, spec)
    macs_p, _ = count_macs_params(pruned, spec)
    speedup = stats["original"].median_ms / stats["pruned"].median_ms
    cell = {
        "model": model_name,
        "target": target,
        "method": method,
        "round_to": round_to,
        "batch": batch,
        "threads": threads,
        "backend": backend,
        "source": str(folder),
        "seed": args.seed,
        "weights": _weights_digest(folder),
        "original_ms": stats["original"].to_dict(),
        "pruned_ms": stats["pruned"].to_dict(),
        "kept_macs": macs_p / macs_o,
        "speedup": speedup,
        "speedup_per_mac_reduction": speedup / (macs_o / macs_p),
        "spec_macs": data.get("macs"),
    }
    if round_to != 1 or args.round_to:
        cell["val_accuracy"] = _val_accuracy(pruned, spec)
    return cell


def _profile(args, model_name: str, target: float, batch: int, threads: int) -> str:
    """Where the pruned model's time goes: torch.profiler's operators by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    from robustprune.structure import load_pruned

    folder, _ = _pruned_model(args, model_name, target, 1)
    if folder is None:
        return f"(no pruned {model_name} at {target:g} to profile)"
    lines = []
    for label, model in (("original", zoo.load(model_name)[0]), ("pruned", load_pruned(folder)[0])):
        spec = zoo.load(model_name)[1]
        with torch_threads(threads):
            run = compile_for(model, spec, batch, "eager")
            for _ in range(3):
                run()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(10):
                    run()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
        lines += [
            f"{label} ({model_name} at {target:g} of the MACs, batch {batch}, {threads} threads, eager, 10 runs):"
        ]
        lines += ["", "```", table.strip(), "```", ""]
    return "\n".join(lines)


def _rounds(cells: list[dict]) -> str:
    """The timed rounds the cells recorded (e.g. "50" or "50-100")."""
    runs = sorted({c["original_ms"]["runs"] for c in cells if "original_ms" in c})
    return "?" if not runs else str(runs[0]) if len(runs) == 1 else f"{runs[0]}-{runs[-1]}"


def _sources(cells: list[dict]) -> list[str]:
    """One line per commit the cells were measured at: how many cells, which models, the load averages seen."""
    by_commit: dict[str, list[dict]] = {}
    for c in cells:
        by_commit.setdefault(c.get("provenance", {}).get("commit", "unknown"), []).append(c)
    lines = ["Cells by the commit they were measured at (each cell's JSON holds its full provenance):", ""]
    for commit, group in by_commit.items():
        info = group[0].get("provenance", {})
        loads = [c["provenance"]["load_average"] for c in group if "load_average" in c.get("provenance", {})]
        load = f", load average {min(loads):.2f}-{max(loads):.2f}" if loads else ""
        models = ", ".join(sorted({f"{c['model']} {c['target']:g}" for c in group}))
        commands = sorted({c["provenance"]["command"] for c in group if "command" in c.get("provenance", {})})
        how = f" by `{'`, `'.join(commands)}`" if commands else ""
        lines.append(
            f"- `{short_commit(commit)}`{how}: {len(group)} cells "
            f"({models}) on {info.get('machine', '?')}, torch {info.get('torch', '?')}{load}"
        )
    return [*lines, ""]


def _row(c: dict) -> str:
    if "error" in c:
        head = f"| {c['model']} | {c['target']:g} | {c['method']} | | {c['batch']} | {c['threads']} | {c['backend']} |"
        return f"{head} failed: {c['error']} | | | | |"
    o, p = c["original_ms"], c["pruned_ms"]
    acc = f"{100 * c['val_accuracy']:.2f}" if "val_accuracy" in c else ""
    return (
        f"| {c['model']} | {c['target']:g} | {c['method']} | {100 * c['kept_macs']:.1f} | {c['batch']} | "
        f"{c['threads']} | {c['backend']} | {o['median_ms']:.3f} ({o['iqr_ms']:.3f}) | "
        f"{p['median_ms']:.3f} ({p['iqr_ms']:.3f}) | {c['speedup']:.2f}x | {c['speedup_per_mac_reduction']:.2f} | "
        f"{acc} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(zoo.names()))
    parser.add_argument("--targets", nargs="+", type=float, default=[0.7, 0.5, 0.3])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 256])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--backends", nargs="*", default=[*BACKENDS, "onnx"], choices=[*BACKENDS, "onnx"])
    parser.add_argument("--runs", type=int, default=50, help="interleaved rounds per cell (>= 50 for the report)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--method", default="search", help="which pruned run folders: search, oneshot_search, ...")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--models-dir", default=str(ABLATION_MODELS), help="run folders <model>__<method>__<t>__s<seed>"
    )
    parser.add_argument("--search-missing", action="store_true", help="run the search where no run folder exists")
    parser.add_argument("--search-trials", type=int, help="trials per step of those searches (default: the library's)")
    parser.add_argument("--round-to", type=int, default=0, help="also the search with widths in multiples of N")
    parser.add_argument("--int8", action="store_true", help="also pruned int8 vs fp32 original (batch 256, 2 threads)")
    parser.add_argument("--profile", action="store_true", help="profile the first model at 0.5, batch 256, 2 threads")
    parser.add_argument("--report-only", action="store_true", help="write the report from saved cells only")
    parser.add_argument(
        "--search-only",
        action="store_true",
        help="only run the missing searches (no quiet machine needed); time them later with the same command",
    )
    parser.add_argument("--out", default=str(RESULTS / "latency.md"))
    parser.add_argument("--cells", help="cell JSON folder (default: <out dir>/latency/cells)")
    args = parser.parse_args(argv)
    args.cells = args.cells or str(Path(args.out).parent / "latency" / "cells")
    cells_dir = Path(args.cells)
    cells_dir.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.latency " + " ".join(sys.argv[1:] if argv is None else argv)
    load = os.getloadavg()[0]
    plan = [
        (m, t, r, b, n, backend)
        for m in args.models
        for t in args.targets
        for r in ([1, args.round_to] if args.round_to > 1 else [1])
        for b in args.batches
        for n in args.threads
        for backend in args.backends
    ]
    if args.int8:
        plan += [(m, t, 1, 256, 2, "int8") for m in args.models for t in args.targets]
    if args.search_only:
        args.search_missing = True
        for m, t, r in dict.fromkeys((m, t, r) for m, t, r, *_ in plan):
            if all(_cell_path(cells_dir, *c, args.method, args.seed).is_file() for c in plan if c[:3] == (m, t, r)):
                print(f"{m} at {t:g} (round_to {r}): every cell timed already, no search needed")
                continue
            folder, _method = _pruned_model(args, m, t, r)
            print(f"{m} at {t:g} (round_to {r}): {folder or 'no pruned model'}", flush=True)
        return
    cells, missing, unmeasured = [], set(), set()
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for i, (m, t, r, b, n, backend) in enumerate(plan):
            path = _cell_path(cells_dir, m, t, r, b, n, backend, args.method, args.seed)
            if path.is_file():
                saved = json.loads(path.read_text())
                if not _stale(saved, args):
                    cells.append(saved)
                    continue
                print(f"{path.name}: timed another pruned model (weights changed), timing again", flush=True)
            if (m, t, r) in missing:
                continue
            if args.report_only:
                unmeasured.add(f"{m} at {t:g} (round_to {r}" + (", int8)" if backend == "int8" else ")"))
                continue
            try:
                cell = _measure_cell(args, m, t, r, b, n, backend, Path(tmp))
            except Exception as error:  # one backend failing on one model (e.g. an inductor bug) is a result
                message = f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"
                cell = {"model": m, "target": t, "round_to": r, "batch": b, "threads": n, "backend": backend}
                cell |= {"method": args.method, "error": message}
                folder, _ = _pruned_model(args, m, t, r, search=False)
                if folder is not None:  # a failure of this model: timed again once the model changes
                    cell["weights"] = _weights_digest(folder)
            if cell is None:
                missing.add((m, t, r))
                print(f"no pruned {m} at {t:g} (round_to {r}): skipped (--search-missing runs the search)")
                continue
            cell["provenance"] = provenance(load_average=os.getloadavg()[0]) | {"command": command}
            atomic_write_json(path, cell)
            cells.append(cell)
            print(f"[{i + 1}/{len(plan)} {time.time() - start:.0f}s] {_row(cell)}", flush=True)
    profile_path = cells_dir.parent / "profile.md"
    if args.profile and not args.report_only:
        profile = _profile(args, args.models[0], 0.5, 256, 2)
        atomic_write_text(profile_path, f"From `{command}` at commit `{provenance()['commit']}`.\n\n{profile}")
    notes_path = cells_dir.parent / "notes.md"
    info = provenance(load_average_at_start=load)
    lines = [
        "# Delivered speed: pruned vs original",
        "",
        f"Produced by `{command.strip()}` at commit `{info['commit']}` on {info['machine']}; torch {info['torch']}"
        + ("" if args.report_only else f"; load average {load:.2f} at the start")
        + f". Interleaved runs (A B, B A, ...), {_rounds(cells)} rounds per cell after warm-up, median (IQR) "
        "in ms; speed-up / MAC reduction is 1.0 when latency falls as fast as MACs. val top-1: clean accuracy "
        "of the pruned model on the validation split (with --round-to).",
        "",
        "| model | target | pruned by | kept MACs (%) | batch | threads | backend | original ms (IQR) | "
        "pruned ms (IQR) | speed-up | speed-up / MAC reduction | val top-1 (%) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *[_row(c) for c in cells],
        "",
        *_sources(cells),
    ]
    if missing:
        lines += ["Cells without a pruned model (rerun with --search-missing): "]
        lines += [", ".join(f"{m} at {t:g} (round_to {r})" for m, t, r in sorted(missing)), ""]
    if unmeasured:
        lines += ["No cell yet (the same command without --report-only measures them): "]
        lines += [", ".join(sorted(unmeasured)), ""]
    saved = len(list(cells_dir.glob("*.json")))
    if notes_path.is_file() and len(cells) < saved:  # the notes describe the whole table, not a part of it
        lines += [f"This report holds {len(cells)} of the {saved} saved cells; {notes_path} describes them all", ""]
    elif notes_path.is_file():
        lines += ["## Notes", "", notes_path.read_text().strip(), ""]
    if profile_path.is_file():
        lines += ["## Where the time goes", "", profile_path.read_text().strip(), ""]
    atomic_write_text(Path(args.out), "\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
