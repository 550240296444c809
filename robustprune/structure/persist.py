"""Save and load pruned models as a JSON pruning spec plus a state dict.

The spec names, per channel group, the kept channel indices of the *original*
architecture. Loading builds a fresh instance of that architecture, re-applies
the spec with the same physical surgery, and loads the state dict with
``weights_only=True``: no pickled code is ever executed unless the caller opts in.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
import torch_pruning as tp
from torch import nn

from robustprune._io import RunFolderError, atomic_write_json, file_sha256, save_torch
from robustprune._version import __version__
from robustprune.spec import InputSpec
from robustprune.structure.space import Candidate, PruneSpace
from robustprune.structure.surgery import export

FORMAT_VERSION = 1


class UntrustedCodeError(RunFolderError):
    """A run folder names code to import (``package.module:factory``) and the caller did not opt in."""


def candidate_of(spec_data: dict) -> Candidate:
    """The kept channels per group that a saved ``spec.json`` records."""
    return {name: tuple(group["keep"]) for name, group in spec_data["groups"].items()}


def pruning_spec(
    space: PruneSpace, candidate: Candidate, model_ref: str | None = None, weights_sha256: str | None = None
) -> dict:
    """The JSON-serialisable description of ``candidate`` on ``space``. ``original_sha256`` is the digest of the
    original's weights (``space.model``), so a later command can tell whether it was given the same original;
    ``weights_sha256`` that of the pruned.pt beside it, so a loader can tell the two files belong together."""
    from robustprune.probes.cache import weights_hash

    candidate = space.checked(candidate)
    macs, params = space.cost(candidate)
    return {
        "format_version": FORMAT_VERSION,
        "robustprune": __version__,
        "torch": torch.__version__,
        "torch_pruning": tp.__version__,
        "model": model_ref,
        "input_spec": space.spec.to_dict(),
        "exclude": sorted(space.excluded),
        "groups": {
            g.name: {"size": g.size, "keep": sorted(int(i) for i in candidate.get(g.name, range(g.size)))}
            for g in space.groups
        },
        "macs": macs,
        "params": params,
        "original_macs": space.full_macs,
        "original_params": space.full_params,
        "original_sha256": weights_hash(space.model),
        "weights_sha256": weights_sha256,
    }


def save_pruned(
    directory: str | Path, space: PruneSpace, candidate: Candidate, pruned: nn.Module, model_ref: str | None = None
) -> tuple[Path, Path]:
    """Write ``spec.json`` and ``pruned.pt`` (state dict) into ``directory``; returns both paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec_path, weights_path = directory / "spec.json", directory / "pruned.pt"
    save_torch(pruned.state_dict(), weights_path)
    atomic_write_json(spec_path, pruning_spec(space, candidate, model_ref, weights_sha256=file_sha256(weights_path)))
    return spec_path, weights_path


def apply_spec(model: nn.Module, spec_data: dict) -> nn.Module:
    """Physically prune a fresh ``model`` of the original architecture as ``spec_data`` says."""
    if spec_data.get("format_version") != FORMAT_VERSION:
        raise RunFolderError(
            f"unsupported pruning spec format {spec_data.get('format_version')!r}; expected {FORMAT_VERSION}"
        )
    space = PruneSpace(  # re-applying a saved candidate needs no check: the weights file is the truth
        model, InputSpec.from_dict(spec_data["input_spec"]), exclude=spec_data.get("exclude", ()), verify=False
    )
    groups = spec_data["groups"]
    missing = set(groups) - set(space.group_names())
    if missing:
        raise RunFolderError(
            f"the pruning spec names groups this architecture does not have: {', '.join(sorted(missing))}"
        )
    for name, entry in groups.items():
        if space.group(name).size != entry["size"]:
            raise RunFolderError(
                f"group {name!r} has {space.group(name).size} channels here, {entry['size']} in the spec"
            )
    return export(space, {name: entry["keep"] for name, entry in groups.items()})


def load_pruned(
    directory: str | Path,
    build: Callable[[], nn.Module] | None = None,
    allow_pickle: bool = False,
    trust_code: bool = False,
) -> tuple[nn.Module, InputSpec, dict]:
    """Load ``spec.json`` + ``pruned.pt`` from ``directory``: (pruned model, InputSpec, spec dict).

    ``build`` returns a fresh instance of the original architecture. By default it is
    resolved from the spec's model reference: ``zoo:NAME`` always; ``package.module:factory``
    only with ``trust_code=True``, because importing it runs whatever code that module holds
    (a run folder is data and may come from anyone).
    """
    from robustprune.models import build_from, load_checked

    directory = Path(directory)
    spec_path, weights_path = directory / "spec.json", directory / "pruned.pt"
    for path in (spec_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; a pruned-model folder holds spec.json and pruned.pt")
    spec_data = _read_spec(spec_path)
    expected = spec_data.get("weights_sha256")
    if expected is not None and file_sha256(weights_path) != expected:
        raise RunFolderError(
            f"{weights_path} is not the weights file {spec_path} was saved with (another run's, or changed since): "
            "rerun the command that wrote the folder"
        )
    ref = spec_data.get("model")
    name = "build" if build is not None else str(ref)
    if build is None:
        build = _builder(ref, spec_path, trust_code, InputSpec.from_dict(spec_data["input_spec"]), allow_pickle)
    model = apply_spec(build_from(build, name).eval(), spec_data)
    state = _load_weights(weights_path, allow_pickle)
    load_checked(model, state, weights_path)
    return model.eval(), InputSpec.from_dict(spec_data["input_spec"]), spec_data


def _read_spec(path: Path) -> dict:
    """``spec.json`` checked for the fields loading reads, so a damaged file fails in one line."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{path} is not valid JSON ({exc})") from exc
    groups = data.get("groups") if isinstance(data, dict) else None
    valid = (
        isinstance(groups, dict)
        and isinstance(data.get("input_spec"), dict)
        and all(
            isinstance(g, dict)
            and isinstance(g.get("size"), int)
            and isinstance(g.get("keep"), list)
            and all(isinstance(i, int) and 0 <= i < g["size"] for i in g["keep"])
            for g in groups.values()
        )
    )
    if not valid:
        raise RunFolderError(f"{path} is not a robustprune pruning spec (input_spec and groups of size/keep)")
    return data


def _load_weights(path: Path, allow_pickle: bool) -> dict:
    from robustprune.models import ModelRefError

    try:
        state = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as exc:
        hint = "" if allow_pickle else " with weights_only=True; allow_pickle=True (--allow-pickle) if you trust it"
        raise ModelRefError(f"could not load {path}{hint} ({exc.__class__.__name__})") from exc
    if not isinstance(state, dict):
        raise ModelRefError(f"{path} does not hold a state dict (found {type(state).__name__})")
    return state


def _builder(
    ref: object, spec_path: Path, trust_code: bool, spec: InputSpec, allow_pickle: bool = False
) -> Callable[[], nn.Module]:
    """What rebuilds the original architecture: a zoo or torchvision model, a torch.export program, or (trusted
    folders only) an imported factory."""
    from robustprune import zoo
    from robustprune.models import rebuild_original, resolve_factory

    library = rebuild_original(ref, spec, allow_pickle)  # torchvision:NAME, program.pt2: no code of the user runs
    if library is not None:
        return library

    if isinstance(ref, str) and ref.startswith("zoo:"):
        name = ref[4:]
        if name not in zoo.names():
            raise RunFolderError(f"{spec_path} names an unknown zoo model {name!r}; known: {', '.join(zoo.names())}")
        return lambda: zoo.build(name)
    if isinstance(ref, str) and ":" in ref:
        if not trust_code:
            raise UntrustedCodeError(
                f"{spec_path} rebuilds the model with {ref!r}, which imports and runs code; if you trust this "
                "run folder pass trust_code=True (CLI: --allow-code), or pass build=<your factory>"
            )
        return resolve_factory(ref)
    raise RunFolderError(
        f"cannot rebuild the architecture from model reference {ref!r}: in Python pass build=<factory>; for the "
        "command line, save the run with result.save(folder, model_ref='package.module:factory')"
    )
