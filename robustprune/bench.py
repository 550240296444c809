"""Benchmark suites: models x methods x targets x seeds, each cell evaluated on real data.

A suite is a JSON file: a packaged one by name (``robustprune/suites/NAME.json``) or any path::

    {"models": {"resnet20": "macs", "mlp": "params"},   # model -> which cost the target limits
     "methods": ["search", "l1_uniform", "l1_uniform+bn", ...],
     "targets": [0.7, 0.5], "seeds": [0, 1, 2],
     "search": {SearchConfig fields}, "eval": {EvalSettings fields}}

Methods are ``search`` or a one-shot baseline; ``BASELINE+bn`` adds BN re-estimation on the
same synthetic inputs the search uses (data-free too), to separate what the search's
allocation wins from what recalibration alone gives. Finished cells are stored one file
each and skipped on a rerun, so an interrupted suite resumes.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import importlib.resources
import json
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path

import torch

from robustprune import zoo
from robustprune._io import atomic_write_json, claim
from robustprune._progress import progress_bar, write_line
from robustprune._provenance import outputs_excluded, provenance
from robustprune.baselines import INPUT_CRITERIA, METHODS, baseline
from robustprune.bench_tables import write_outputs
from robustprune.compensate import apply_overrides, bn_reestimate_overrides
from robustprune.evaluate.harness import EvalSettings, evaluate
from robustprune.evaluate.paired import PairedSettings, correctness, pack, unpack
from robustprune.probes.cache import cached_generate
from robustprune.search import SEARCH_VARIANTS, SearchConfig, search, variant_config
from robustprune.search.engine import SEARCH_PROBES
from robustprune.spec import InputSpec
from robustprune.structure import PruneSpace, export
from robustprune.structure.persist import save_pruned

# packaged suites ship as package data, so ``--suite NAME`` works from a wheel as well as from a clone
SUITE_DIR = importlib.resources.files("robustprune") / "suites"


@dataclasses.dataclass
class Suite:
    name: str
    models: dict[str, str]
    methods: list[str]
    targets: list[float]
    seeds: list[int]
    search: dict
    eval: dict
    description: str = ""
    paired: dict = dataclasses.field(default_factory=dict)  # PairedSettings: per-image correctness per cell

    def cells(self) -> list[tuple[str, str, float, int]]:
        """Seed-major order: a partial run already covers every model and target with one seed."""
        return [
            (m, method, t, s)
            for s in self.seeds
            for t in self.targets
            for m in self.models
            for method in self.methods
            if not (method.startswith("paoding") and m != "mlp")
        ]

    def search_config(self, kind: str, target: float, seed: int) -> SearchConfig:
        options = copy.deepcopy(self.search)  # never mutate the suite: every cell reads it
        probes = options.pop("probes", {})
        # the suite's probe settings on top of the search's own (eps and all): one set of defaults
        synthetic = dataclasses.replace(SEARCH_PROBES.synthetic, **probes.pop("synthetic", {}))
        probe_config = dataclasses.replace(SEARCH_PROBES, synthetic=synthetic, **probes)
        return SearchConfig(**{f"target_{kind}": target}, probes=probe_config, seed=seed, **options)


def suite_names() -> list[str]:
    """Names of the suites packaged with robustprune (``load_suite(name)`` loads each)."""
    if not SUITE_DIR.is_dir():
        return []
    return sorted(p.name.removesuffix(".json") for p in SUITE_DIR.iterdir() if p.name.endswith(".json"))


def load_suite(name_or_path: str) -> Suite:
    """A packaged suite by name (``quick``) or a suite JSON file by path."""
    if Path(name_or_path).suffix:
        path, name = Path(name_or_path), Path(name_or_path).stem
    else:
        path, name = SUITE_DIR / f"{name_or_path}.json", name_or_path
    if not path.is_file():
        raise FileNotFoundError(
            f"no benchmark suite {name_or_path!r} (looked for {path}); known: {', '.join(suite_names())}"
        )
    data = json.loads(path.read_text())
    suite = Suite(
        name=name,
        models=data["models"],
        methods=data["methods"],
        targets=data["targets"],
        seeds=data["seeds"],
        search=data.get("search", {}),
        eval=data.get("eval", {}),
        description=data.get("description", ""),
        paired=data.get("paired", {}),
    )
    try:
        PairedSettings(**suite.paired)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"suite {suite.name}: paired settings {suite.paired}: {exc}") from None
    for method in suite.methods:
        base = method.removesuffix("+bn")
        if method not in SEARCH_VARIANTS and base not in METHODS:
            raise ValueError(f"suite {suite.name}: unknown method {method!r}")
    for name, kind in suite.models.items():
        if name not in zoo.names():
            raise ValueError(
                f"suite {suite.name}: model {name!r} is not a zoo model ({', '.join(zoo.names())}); suites "
                "benchmark the zoo on Fashion-MNIST: prune your own model with search / baseline --data"
            )
        if kind not in ("macs", "params"):
            raise ValueError(f"suite {suite.name}: model {name!r} has target kind {kind!r}; use macs or params")
    return suite


def cell_id(model: str, method: str, target: float, seed: int) -> str:
    return f"{model}__{method}__{target:g}__s{seed}"


def run_cell(
    suite: Suite,
    model_name: str,
    method: str,
    target: float,
    seed: int,
    cache_dir=None,
    quiet: bool = True,
    eval_device: str | None = None,
    search_device: str | None = None,
    models_dir: str | Path | None = None,
    pruned_from: str | Path | None = None,
) -> dict:
    """Prune and evaluate one cell.

    ``models_dir`` also keeps the pruned model as a run folder ``models_dir/<cell id>/`` (spec.json,
    pruned.pt), so later measurements (latency, recovery) start from the very same models.

    ``pruned_from``: another run's output folder (``cells/`` and ``models/``, e.g. the validation
    suite's). Pruning is data-free, so where that run pruned this cell under the same search settings,
    its saved model is evaluated instead of pruning again (``pruned_in`` in the row says so); else the
    cell prunes as usual.

    ``search_device`` (e.g. ``"cuda"``) runs the search and its synthesis there; ``eval_device``
    the real-data evaluation. One-shot baselines always prune on the CPU (they take seconds).
    """
    model, spec = zoo.load(model_name)
    start = time.time()
    reused, earlier_row, origin = (None, None, None)
    if pruned_from is not None:
        reused, earlier_row, origin = _earlier_pruned(suite, model_name, method, target, seed, spec, pruned_from)
    if reused is not None:
        pruned = reused
        kept = {"macs": earlier_row["kept_macs"], "params": earlier_row["kept_params"]}
        extra = {k: earlier_row[k] for k in _SEARCH_FIELDS if k in earlier_row}
        extra["pruned_in"] = origin | {"prune_seconds": earlier_row["prune_seconds"]}
        models_dir = None  # the model is already saved where it came from
    else:
        pruned, kept, saved, extra = prune_cell(
            suite, model_name, method, target, seed, cache_dir=cache_dir, quiet=quiet, search_device=search_device,
            zoo_model=(model, spec),
        )  # fmt: skip
    seconds = time.time() - start  # for a reused model: loading and checking it (pruned_in has the pruning's)
    if pruned_from is not None and reused is None:
        extra["pruned_again"] = origin  # why the other run's model was not used
        if earlier_row is not None:  # is the model pruned again the one that run evaluated? (one clean pass)
            extra["reproduces_earlier"] = reproduces_row(pruned, spec, earlier_row)
    if models_dir is not None:
        save_pruned(Path(models_dir) / cell_id(model_name, method, target, seed), *saved, pruned, f"zoo:{model_name}")
    if eval_device is not None:
        pruned = pruned.to(eval_device)
    # a suite may fix the evaluation seed (the same images for every seed) or leave it to the cell's seed
    settings = EvalSettings(**{"seed": seed, **suite.eval})
    eval_start = time.time()
    report = evaluate(pruned, spec, settings=settings, model_ref=f"zoo:{model_name}", quiet=True)
    if suite.paired:
        correct = correctness(pruned, spec, PairedSettings(**suite.paired), device=eval_device)
        extra["per_image"] = {name: pack(values) for name, values in correct.items()}
    extra["eval_seconds"] = time.time() - eval_start
    return {
        "model": model_name,
        "method": method,
        "target_kind": suite.models[model_name],
        "target": target,
        "seed": seed,
        "kept_macs": kept["macs"],
        "kept_params": kept["params"],
        "prune_seconds": seconds,
        "suite_settings": suite_settings(suite),
        **extra,
        "report": report,
    }


def prune_cell(
    suite: Suite,
    model_name: str,
    method: str,
    target: float,
    seed: int,
    *,
    cache_dir: str | Path | None = None,
    quiet: bool = True,
    search_device: str | None = None,
    zoo_model: tuple[torch.nn.Module, InputSpec] | None = None,
) -> tuple[torch.nn.Module, dict, tuple, dict]:
    """(pruned model, kept fractions, (space, candidate), the row's fields about the search) of one cell;
    ``zoo_model``: ``zoo.load(model_name)`` already loaded (never changed, except moved to ``search_device``)."""
    model, spec = zoo_model if zoo_model is not None else zoo.load(model_name)
    kind = suite.models[model_name]
    config = suite.search_config(kind, target, seed)
    if method in SEARCH_VARIANTS:
        config = variant_config(config, method, PruneSpace(model, spec, verify=False))  # the search verifies its own
        source = model.to(search_device) if search_device is not None else model
        result = search(source, spec, config=config, cache_dir=cache_dir, quiet=quiet)
        kept = {
            "macs": result.history[-1].kept_macs if result.history else 1.0,
            "params": result.history[-1].kept_params if result.history else 1.0,
        }
        extra = {
            "trials_per_step": config.trials,
            "steps": len(result.history),
            "stop_reason": result.stop_reason,
            "probe_seconds": result.probe_seconds,
            "search_device": str(search_device or "cpu"),
            "search_threads": torch.get_num_threads(),
        }
        return result.model, kept, (result.space, result.candidate), extra
    synthetic = None
    if method.endswith("+bn") or method.removesuffix("+bn") in INPUT_CRITERIA:  # the search's own synthetic inputs
        synthetic = cached_generate(model, spec, config.probe_config.synthetic, cache_dir=cache_dir).pixels
    inputs = spec.normalize(synthetic) if synthetic is not None else None
    pruned, kept, saved = baseline_model(
        model, spec, method, inputs, seed=seed, with_candidate=True, **{f"target_{kind}": target}
    )
    return pruned, kept, saved, {}


def save_missing_models(
    suite: Suite, out: str | Path, cache_dir: str | Path | None = None, log: Callable[[str], None] = print
) -> dict[str, list[str]]:
    """Prune again the finished cells of ``out`` whose model was not kept, and keep each under
    ``out/models`` only where it makes its row's clean predictions, up to rounding ties (the very model
    the row describes; pruning is deterministic per seed on one host). Returns the cell ids by outcome:
    ``saved``, ``differs`` (not kept) and ``skipped`` (no comparable row)."""
    out = Path(out)
    outcome: dict[str, list[str]] = {"saved": [], "differs": [], "skipped": []}
    todo = [c for c in suite.cells() if not (out / "models" / cell_id(*c) / "spec.json").is_file()]
    for i, (model_name, method, target, seed) in enumerate(todo, 1):
        name = cell_id(model_name, method, target, seed)
        row, why = _comparable_row(suite, model_name, out / "cells" / f"{name}.json")
        if row is None:
            outcome["skipped"].append(name)
            continue
        previous = torch.get_num_threads()
        threads = row.get("search_threads") or row["report"].get("provenance", {}).get("threads") or previous
        torch.set_num_threads(threads)  # the thread count the cell pruned with: the same sums
        zoo_model = zoo.load(model_name)
        try:
            pruned, _, saved, _ = prune_cell(
                suite, model_name, method, target, seed, cache_dir=cache_dir, zoo_model=zoo_model
            )
        finally:
            torch.set_num_threads(previous)
        spec = zoo_model[1]
        same = reproduces_row(pruned, spec, row)
        if same:
            save_pruned(out / "models" / name, *saved, pruned, f"zoo:{model_name}")
        outcome["saved" if same else "differs"].append(name)
        log(f"[{i}/{len(todo)}] {name}: {'saved' if same else 'pruned again, but its predictions differ: not kept'}")
    return outcome


#: a search cell's fields about how it pruned (copied when a saved model is reused)
_SEARCH_FIELDS = ("trials_per_step", "steps", "stop_reason", "probe_seconds", "search_device", "search_threads")


def _earlier_pruned(
    suite: Suite, model_name: str, method: str, target: float, seed: int, spec: InputSpec, pruned_from: str | Path
) -> tuple[torch.nn.Module | None, dict | None, dict | str]:
    """(model, earlier row, source) of this cell as another run pruned it under the same search settings,
    or (None, that row or None, why not): no finished cell, other settings, no saved model, or a saved model
    whose clean predictions on that run's images differ from its row's (a folder rewritten by another run)."""
    from robustprune._io import RunFolderError
    from robustprune.structure.persist import load_pruned

    name = cell_id(model_name, method, target, seed)
    folder, row_path = Path(pruned_from) / "models" / name, Path(pruned_from) / "cells" / f"{name}.json"
    row, why = _comparable_row(suite, model_name, row_path)
    if row is None:
        return None, None, why
    if not (folder / "spec.json").is_file():
        return None, row, "no saved model"
    try:
        pruned, _, _ = load_pruned(folder)
    except RunFolderError as exc:  # e.g. a weights file that is not the one its spec.json was saved with
        return None, row, f"the saved model does not load ({exc})"
    if not reproduces_row(pruned, spec, row):
        return None, row, "the saved model's predictions differ from its row's"
    prov = row["report"].get("provenance", {})
    source = {"cell": str(row_path), "commit": prov.get("commit"), "machine": prov.get("machine")}
    return pruned, row, source


def _comparable_row(suite: Suite, model_name: str, row_path: Path) -> tuple[dict | None, str | None]:
    """(another run's row of this cell, None) when it pruned under this suite's search settings and kept
    per-image records, else (None, why not)."""
    if not row_path.is_file():
        return None, "no finished cell"
    row = json.loads(row_path.read_text())
    if row.get("suite_settings", {}).get("search") != json.loads(json.dumps(suite.search)):
        return None, "other search settings"
    if row.get("target_kind") != suite.models[model_name]:
        return None, "another target kind"
    if row.get("per_image", {}).get("clean") is None:
        return None, "no per-image record to check the saved model against"
    return row, None


#: A clean verdict may differ from its row's only at a rounding tie: where the logit that decides it is within
#: this fraction of the top logit (another CPU's kernels round differently; another model's flips are far off).
ROUNDING_TIE = 1e-5


def reproduces_row(
    model: torch.nn.Module, spec: InputSpec, row: dict, images: tuple[torch.Tensor, torch.Tensor] | None = None
) -> bool:
    """Whether ``model`` makes the clean verdicts a cell's row recorded (its per-image correctness on its
    paired split, or on ``images``), up to rounding ties: the check that a model is the one the row describes.

    A verdict that is now wrong is a tie where the predicted logit is within ROUNDING_TIE of the true class's;
    one that is now right, where the true class's logit is within it of the runner-up's."""
    from robustprune.data.fashion_mnist import load_eval_split
    from robustprune.evaluate.attacks import BATCH_SIZE
    from robustprune.evaluate.metrics import predict_logits

    x, y = images if images is not None else load_eval_split(row["suite_settings"]["paired"]["split"])
    recorded = unpack(row["per_image"]["clean"])
    if len(recorded) != len(x):
        return False
    logits = predict_logits(model, spec, x, batch_size=BATCH_SIZE)  # the batches the row was recorded in
    y = torch.as_tensor(y)
    differ = (logits.argmax(dim=1) == y) != recorded
    logits, y = logits[differ], y[differ]
    top = logits.topk(2, dim=1)
    true_logit = logits.gather(1, y[:, None])[:, 0]
    now_right = top.indices[:, 0] == y
    rival = torch.where(now_right, top.values[:, 1], true_logit)  # the logit the deciding one had to beat
    return bool((top.values[:, 0] - rival <= ROUNDING_TIE * top.values[:, 0].abs().clamp_min(1.0)).all())


def baseline_model(model, spec, method: str, inputs, seed: int = 0, with_candidate: bool = False, **target):
    """A baseline's (pruned model, kept fractions[, (space, candidate)]); ``+bn`` re-estimates BN on ``inputs``."""
    result = baseline(model, spec, method.removesuffix("+bn"), seed=seed, inputs=inputs, **target)
    pruned = result.model
    if method.endswith("+bn"):
        overrides = bn_reestimate_overrides(result.space, result.candidate, inputs, batch_size=len(inputs))
        pruned = export(result.space, result.candidate, model=apply_overrides(result.space.model, overrides))
    if with_candidate:
        return pruned, result.kept_fraction, (result.space, result.candidate)
    return pruned, result.kept_fraction


class CellsFailed(RuntimeError):
    """Some cells of a parallel run raised; the others are saved."""


def suite_settings(suite: Suite) -> dict:
    """What a finished cell's numbers depend on besides its (model, method, target, seed)."""
    settings = {"search": suite.search, "eval": suite.eval}
    return {**settings, "paired": suite.paired} if suite.paired else settings


class SuiteError(ValueError):
    """A suite that cannot run as asked (e.g. into a folder of cells computed under other settings)."""


def _check_settings(suite: Suite, path: Path) -> None:
    """Refuse to mix cells computed under other settings into one table (resume must not lie)."""
    stored = json.loads(path.read_text()).get("suite_settings")
    if stored != json.loads(json.dumps(suite_settings(suite))):
        raise SuiteError(
            f"{path} was computed with other suite settings ({stored}) than suite {suite.name!r} "
            f"({suite_settings(suite)}); use another --out directory or delete {path.parent}"
        )


def run_suite(
    suite: Suite,
    out: str | Path,
    cache_dir=None,
    log: Callable[[str], None] | None = None,
    eval_device: str | None = None,
    search_device: str | None = None,
    workers: int = 1,
    threads: int | None = None,
    pruned_from: str | Path | None = None,
) -> list[dict]:
    """Run every missing cell of ``suite`` into ``out`` and rewrite the summary files.

    ``workers`` > 1 runs cells in that many processes (``threads`` torch threads each);
    every finished cell is written as soon as it is done, so a kill loses only cells in flight.
    Runners started on one ``out`` folder split its cells: each holds a claim on the cell it works
    on (``cells/.<cell id>.running``, freed when it finishes or dies) and skips cells others hold.
    ``pruned_from``: evaluate another run's saved models where they match (``run_cell``).
    """
    with outputs_excluded(out):  # the tables it rewrites are outputs: they must not mark the code dirty
        return _run_suite(suite, Path(out), cache_dir, log, eval_device, search_device, workers, threads, pruned_from)


def _run_suite(suite, out, cache_dir, log, eval_device, search_device, workers, threads, pruned_from) -> list[dict]:
    say = log or write_line
    out = Path(out)
    cells_dir = out / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    cells = suite.cells()
    todo = []
    for i, cell in enumerate(cells, start=1):
        path = cells_dir / f"{cell_id(*cell)}.json"
        if path.is_file():
            _check_settings(suite, path)
            say(f"[{i}/{len(cells)}] {' '.join(map(str, cell))}: done earlier")
        else:
            todo.append((i, cell, path))

    def finished(i, cell, row: dict | str):
        if isinstance(row, str):  # another runner on this folder has it or finished it
            say(f"[{i}/{len(cells)}] {' '.join(map(str, cell))}: {row}")
            return
        say(
            f"[{i}/{len(cells)}] {' '.join(map(str, cell))}: clean {row['report']['clean_accuracy']:.4f}  "
            f"pgd {row['report']['robust_accuracy']['pgd']:.4f}  kept MACs {row['kept_macs']:.3f}  "
            f"({row['prune_seconds']:.0f}s)"
        )

    with progress_bar(
        len(cells), "bench cells", quiet=log is not None, unit="cell", initial=len(cells) - len(todo)
    ) as bar:
        if workers <= 1:
            if threads:
                torch.set_num_threads(threads)
            for i, cell, path in todo:
                result = _run_and_record(
                    suite,
                    cell,
                    path,
                    started=lambda i=i, cell=cell: say(f"[{i}/{len(cells)}] {' '.join(map(str, cell))} ..."),
                    cache_dir=cache_dir,
                    eval_device=eval_device,
                    search_device=search_device,
                    models_dir=out / "models",
                    pruned_from=pruned_from,
                )
                finished(i, cell, result)
                bar.update(1)
        else:
            context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch thread pools
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = {
                    pool.submit(
                        _run_cell_in_worker,
                        suite,
                        cell,
                        path,
                        cache_dir,
                        (eval_device, search_device),
                        threads,
                        out / "models",
                        pruned_from,
                    ): (
                        i,
                        cell,
                        path,
                    )
                    for i, cell, path in todo
                }
                failed = []
                for future in concurrent.futures.as_completed(futures):
                    i, cell, path = futures[future]
                    try:
                        finished(i, cell, future.result())
                    except Exception as exc:  # one broken cell must not throw away the others' hours
                        failed.append(f"{' '.join(map(str, cell))}: {type(exc).__name__}: {exc}")
                        say(f"[{i}/{len(cells)}] FAILED {failed[-1]}")
                    bar.update(1)
            if failed:
                summarize_suite(suite, out)
                raise CellsFailed(f"{len(failed)} cell(s) failed (the others are saved): " + "; ".join(failed))
    return summarize_suite(suite, out)


def _claim_path(path: Path) -> Path:
    """The lock file a runner holds while it works on the cell whose row goes to ``path``."""
    return path.with_name(f".{path.stem}.running")


def _run_and_record(
    suite: Suite, cell: tuple, path: Path, started: Callable[[], None] | None = None, **kw
) -> dict | str:
    """Run ``cell`` and write its row to ``path``, holding the cell's claim throughout, so that runners
    sharing a folder split its cells between them; a string says why this runner did not run it."""
    with claim(_claim_path(path)) as mine:
        if path.is_file():
            _check_settings(suite, path)
            return "done meanwhile"
        if not mine:
            return "running in another runner, left to it"
        if started is not None:
            started()
        row = run_cell(suite, *cell, **kw)
        atomic_write_json(path, row)
        return row


def _run_cell_in_worker(
    suite: Suite,
    cell: tuple,
    path: Path,
    cache_dir,
    devices: tuple,
    threads: int | None,
    models_dir: Path | None = None,
    pruned_from: Path | None = None,
) -> dict | str:
    if threads:
        torch.set_num_threads(threads)
    return _run_and_record(
        suite,
        cell,
        path,
        cache_dir=cache_dir,
        eval_device=devices[0],
        search_device=devices[1],
        models_dir=models_dir,
        pruned_from=pruned_from,
    )


def _original_from_sibling(suite: Suite, model: str, out: Path) -> dict | None:
    """The unpruned ``model``'s report from a results folder beside ``out`` whose suite evaluated it with the same
    settings, at this commit on this machine and torch version (it depends on nothing else); None if there is none."""
    here = provenance()
    for path in sorted(out.parent.glob(f"*/cells/{model}__original.json")):
        if path.parent.parent == out:
            continue
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        made = report.get("provenance", {})
        if (report.get("suite_settings") or {}).get("eval") != json.loads(json.dumps(suite.eval)):
            continue
        if any(made.get(key) != here[key] for key in ("commit", "machine", "torch")):
            continue
        report.pop("suite_settings")
        return report
    return None


def summarize_suite(suite: Suite, out: str | Path) -> list[dict]:
    """Write the summary files from the finished cells in ``out`` (all of them, or those done so far)."""
    out = Path(out)
    cells_dir = out / "cells"
    paths = [cells_dir / f"{cell_id(*c)}.json" for c in suite.cells()]
    if not any(p.is_file() for p in paths):
        return []
    originals = {}
    for model in suite.models:
        path = cells_dir / f"{model}__original.json"
        if not path.is_file():
            report = _original_from_sibling(suite, model, out)
            if report is None:
                net, spec = zoo.load(model)
                report = evaluate(net, spec, settings=EvalSettings(**suite.eval), model_ref=f"zoo:{model}", quiet=True)
            atomic_write_json(path, {**report, "suite_settings": suite_settings(suite)})
        _check_settings(suite, path)
        originals[model] = json.loads(path.read_text())
    rows = [json.loads(p.read_text()) for p in paths if p.is_file()]
    if rows:
        write_outputs(suite, rows, originals, out, complete=len(rows) == len(paths))
    return rows


__all__ = ["Suite", "load_suite", "run_suite", "suite_names"]
