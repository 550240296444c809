"""Opening run folders never runs code without an opt-in; model-loading errors are one line that says why."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from robustprune import zoo
from robustprune.cli import main
from robustprune.models import ModelRefError, load_model
from robustprune.search import SearchResult
from robustprune.spec import SpecError
from robustprune.structure import PruneSpace, export, load_pruned, save_pruned
from robustprune.structure.persist import RunFolderError, UntrustedCodeError

REPO = Path(__file__).resolve().parents[1]


def random_candidate(space: PruneSpace, ratio: float, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        grp.name: sorted(torch.randperm(grp.size, generator=g)[: max(1, round(grp.size * (1 - ratio)))].tolist())
        for grp in space.groups
    }


@pytest.fixture
def user_modules(tmp_path, monkeypatch):
    """A folder on sys.path where a test writes importable modules."""
    folder = tmp_path / "mods"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))

    written = []

    def write(name: str, source: str) -> str:
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    yield write
    for name in written:  # a later test imports its own version
        sys.modules.pop(name, None)


@pytest.fixture
def malicious_run(tmp_path, user_modules):
    """A genuine mlp run folder whose spec names a module that writes a marker file when imported or called."""
    marker = tmp_path / "marker"
    module = user_modules(
        "rp_evil_factory",
        f"""
        from pathlib import Path
        Path({str(marker)!r}).write_text("imported")

        def build():
            from robustprune import zoo
            Path({str(marker)!r}).write_text("called")
            return zoo.build("mlp")
        """,
    )
    model, spec = zoo.load("mlp")
    space = PruneSpace(model, spec)
    candidate = random_candidate(space, 0.4)
    run = tmp_path / "run"
    save_pruned(run, space, candidate, export(space, candidate), model_ref=f"{module}:build")
    return run, marker


def test_run_folder_naming_code_is_refused_without_opt_in(malicious_run):
    run, marker = malicious_run
    with pytest.raises(UntrustedCodeError, match="trust_code=True") as info:
        load_pruned(run)
    assert "\n" not in str(info.value) and "--allow-code" in str(info.value)
    with pytest.raises(UntrustedCodeError):
        SearchResult.load(run)
    assert not marker.exists(), "the module named by the run folder was imported"
    model, _, _ = load_pruned(run, trust_code=True)
    assert marker.read_text() == "called" and isinstance(model, nn.Module)


def test_export_cli_needs_allow_code_for_a_factory_run_folder(malicious_run, tmp_path, capsys):
    run, marker = malicious_run
    out = tmp_path / "m.pt"
    assert main(["export", str(run), "--format", "state_dict", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--allow-code" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists() and not out.exists()
    assert main(["export", str(run), "--format", "state_dict", "--out", str(out), "--allow-code", "--quiet"]) == 0
    assert out.is_file() and marker.exists()


def test_zoo_run_folders_load_without_opt_in(tmp_path):
    model, spec = zoo.load("mlp")
    space = PruneSpace(model, spec)
    candidate = random_candidate(space, 0.3)
    save_pruned(tmp_path, space, candidate, export(space, candidate), model_ref="zoo:mlp")
    loaded, _, _ = load_pruned(tmp_path)
    assert sum(p.numel() for p in loaded.parameters()) < sum(p.numel() for p in model.parameters())


def test_crafted_stdlib_reference_does_not_run(tmp_path):
    model, spec = zoo.load("mlp")
    space = PruneSpace(model, spec)
    candidate = random_candidate(space, 0.3)
    save_pruned(tmp_path, space, candidate, export(space, candidate), model_ref="http.server:test")
    proc = subprocess.run(
        [sys.executable, "-m", "robustprune", "export", str(tmp_path), "--out", str(tmp_path / "x.ts")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "--allow-code" in proc.stderr


def test_factory_that_raises_or_needs_arguments_is_one_line(user_modules, tmp_path):
    module = user_modules(
        "rp_bad_factories",
        """
        import torch

        def broken():
            raise RuntimeError("no GPU here\\nsecond line")

        def needs(width, depth=2):
            return torch.nn.Linear(width, 10)

        def not_a_module():
            return 42

        value = 3
        """,
    )
    weights = tmp_path / "w.pt"
    torch.save({}, weights)
    for attr, message in [
        ("broken", r"rp_bad_factories:broken raised RuntimeError: no GPU here"),
        ("needs", r"rp_bad_factories:needs needs arguments \(width\)"),
        ("not_a_module", r"returned int, not a torch.nn.Module"),
        ("value", r"is not callable"),
    ]:
        with pytest.raises(ModelRefError, match=message) as info:
            load_model(f"{module}:{attr}", weights=weights)
        assert "\n" not in str(info.value)


def test_export_builder_that_returns_a_non_module_is_one_line(tmp_path, user_modules):
    module = user_modules("rp_builder_int", "def build():\n    return 'not a model'\n")
    model, spec = zoo.load("mlp")
    space = PruneSpace(model, spec)
    candidate = random_candidate(space, 0.3)
    save_pruned(tmp_path, space, candidate, export(space, candidate), model_ref=f"{module}:build")
    with pytest.raises(ModelRefError, match="returned str, not a torch.nn.Module"):
        load_pruned(tmp_path, trust_code=True)
    with pytest.raises(ModelRefError, match="returned str"):
        load_pruned(tmp_path, build=lambda: "not a model")


def test_wrong_shape_weights_name_the_tensor_and_both_shapes(tmp_path):
    state = zoo.build("mlp").state_dict()
    name = next(k for k, v in state.items() if v.dim() == 2)
    state[name] = torch.zeros(state[name].shape[0] + 1, state[name].shape[1])
    path = tmp_path / "w.pt"
    torch.save(state, path)
    want = tuple(zoo.build("mlp").state_dict()[name].shape)
    with pytest.raises(ModelRefError) as info:
        load_model("robustprune.zoo.architectures:mlp", weights=path)
    message = str(info.value)
    assert name in message and str(tuple(state[name].shape)) in message and str(want) in message
    assert "\n" not in message


def test_pruned_weights_that_do_not_fit_the_spec_are_one_line(tmp_path):
    model, spec = zoo.load("mlp")
    space = PruneSpace(model, spec)
    candidate = random_candidate(space, 0.4)
    save_pruned(tmp_path, space, candidate, export(space, candidate), model_ref="zoo:mlp")
    data = json.loads((tmp_path / "spec.json").read_text())
    group = next(iter(data["groups"].values()))
    group["keep"] = group["keep"][:-1]  # one channel fewer than the weights hold
    (tmp_path / "spec.json").write_text(json.dumps(data))
    with pytest.raises(ModelRefError, match=r"has shape \(.*\) in .*pruned.pt, \(.*\) in the model") as info:
        load_pruned(tmp_path)
    assert "\n" not in str(info.value)


def test_torchscript_shape_error_is_one_line(tmp_path):
    scripted = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(784, 10))), scripted)
    spec = zoo.FASHION_MNIST_SPEC.__class__(shape=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, num_classes=10)
    with pytest.raises(SpecError, match="cannot be multiplied") as info:
        load_model(str(scripted), spec=spec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text, message",
    [("{not json", "not valid JSON"), ('{"model": "zoo:mlp", "groups": {"g": {"size": 3, "keep": [7]}}}', "not a")],
)
def test_damaged_spec_is_one_line(tmp_path, text, message):
    model, spec = zoo.load("mlp")
    space = PruneSpace(model, spec)
    candidate = random_candidate(space, 0.3)
    save_pruned(tmp_path, space, candidate, export(space, candidate), model_ref="zoo:mlp")
    (tmp_path / "spec.json").write_text(text)
    with pytest.raises(RunFolderError, match=message) as info:
        load_pruned(tmp_path)
    assert "\n" not in str(info.value)


def test_a_run_folder_without_a_model_reference_says_how_the_command_line_could_rebuild_it(tmp_path):
    model, spec = zoo.load("mlp")
    space = PruneSpace(model, spec)
    candidate = random_candidate(space, 0.3)
    save_pruned(tmp_path, space, candidate, export(space, candidate))  # saved from Python, no model_ref
    with pytest.raises(RunFolderError, match=r"pass build=<factory>; .*result.save\(folder, model_ref="):
        load_pruned(tmp_path)
    assert load_pruned(tmp_path, build=lambda: zoo.build("mlp"))[0] is not None
