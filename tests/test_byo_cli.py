"""Bring your own model, end to end from the command line: input specs from flags and files, evaluation on
the user's data, a model trained on [0, 1] inputs, and the refusals (one line, exit 2)."""

import importlib
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robustprune import InputSpec, zoo
from robustprune.cli import main
from robustprune.data.fashion_mnist import fashion_mnist_available, load_fashion_mnist
from robustprune.evaluate.metrics import accuracy, predict_logits
from robustprune.models import load_model
from robustprune.structure import load_pruned
from tests.helpers import randomize_norms

CIFAR_NET = """
from torch import nn

def build():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 100),
    )
"""
CIFAR_FLAGS = ["--input-shape", "3,32,32", "--num-classes", "100", "--mean", "0.49,0.48,0.45", "--std", "0.25"]
CIFAR_SPEC = InputSpec((3, 32, 32), (0.49, 0.48, 0.45), (0.25,), 100)
SMALL_EVAL = ["--n-attack", "4", "--n-corruption", "4", "--pgd-steps", "2", "--no-latency", "--quiet"]


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Write an importable module into a folder on sys.path; forgotten again after the test."""
    folder = tmp_path / "mods"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    names = []

    def write(name: str, source: str) -> str:
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture
def cifar(tmp_path, user_module):
    """A CIFAR-100-shaped net (factory ref, weights file) and a small labeled and unlabeled .npz of its inputs."""
    ref = user_module("rp_cifar_net", CIFAR_NET) + ":build"
    torch.manual_seed(0)
    model = randomize_norms(importlib.import_module("rp_cifar_net").build())
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    rng = np.random.default_rng(0)
    x = rng.random((16, 3, 32, 32), dtype=np.float32)
    np.savez(tmp_path / "labeled.npz", x=x, y=rng.integers(0, 100, 16))
    np.savez(tmp_path / "unlabeled.npz", x=x)
    return ref, weights, model


def _json(path) -> dict:
    return json.loads(path.read_text())


def test_cifar_shaped_model_end_to_end_from_the_cli(tmp_path, cifar):
    ref, weights, original = cifar
    run = tmp_path / "run"
    search = ["search", "--model", ref, "--weights", str(weights), *CIFAR_FLAGS, "--target-macs", "0.7"]
    tiny = ["--steps", "1", "--trials", "2", "--n-probes", "8", "--probe-steps", "3", "--quiet"]
    assert main([*search, *tiny, "--out", str(run)]) == 0
    data = _json(run / "spec.json")
    assert InputSpec.from_dict(data["input_spec"]) == CIFAR_SPEC and data["model"] == ref
    assert data["macs"] <= 0.7 * data["original_macs"]
    assert "--data" in _json(run / "report.json")["provenance"]["data_missing"]  # Fashion-MNIST does not apply

    pruned, spec, _ = load_pruned(run, trust_code=True)
    assert spec == CIFAR_SPEC
    labeled = np.load(tmp_path / "labeled.npz")
    x, y = torch.from_numpy(labeled["x"]), torch.from_numpy(labeled["y"])
    expected = accuracy(pruned(CIFAR_SPEC.normalize(x)), y)  # the spec's normalization, nothing else

    out = tmp_path / "eval.json"
    evaluate = ["eval", "--model", str(run), "--allow-code", "--data", str(tmp_path / "labeled.npz")]
    assert main([*evaluate, *SMALL_EVAL, "--json", str(out)]) == 0
    report = _json(out)
    assert report["clean_accuracy"] == pytest.approx(expected, abs=1e-9)
    assert set(report["robust_accuracy"]) == {"fgsm", "pgd"} and report["corruption_accuracy"] is not None
    assert report["macs"] == _json(run / "report.json")["macs"] and report["provenance"]["labels"] == "data"

    # unlabeled data: agreement with the original model
    unlabeled = ["eval", "--model", str(run), "--allow-code", "--data", str(tmp_path / "unlabeled.npz")]
    original_flags = ["--original", ref, "--original-weights", str(weights)]
    assert main([*unlabeled, *original_flags, *SMALL_EVAL, "--json", str(out)]) == 0
    report = _json(out)
    with torch.no_grad():
        agree = (pruned(CIFAR_SPEC.normalize(x)).argmax(1) == original(CIFAR_SPEC.normalize(x)).argmax(1)).double()
    assert report["clean_accuracy"] is None and report["robust_accuracy"] is None
    assert report["agreement"]["clean"] == pytest.approx(float(agree.mean()), abs=1e-9)
    assert set(report["agreement"]) == {"clean", "fgsm", "pgd", "corruption"}

    # export, then reload: the program carries the spec in its sidecar and needs no flags
    program = tmp_path / "pruned.pt2"
    assert main(["export", str(run), "--allow-code", "--format", "torch-export", "--out", str(program)]) == 0
    reloaded, reloaded_spec = load_model(str(program))
    assert reloaded_spec == CIFAR_SPEC
    with torch.no_grad():
        assert torch.allclose(reloaded(CIFAR_SPEC.normalize(x)), pruned(CIFAR_SPEC.normalize(x)), atol=1e-5)
    assert main(["eval", "--model", str(program), "--data", str(tmp_path / "labeled.npz"), *SMALL_EVAL]) == 0


@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed")
def test_a_model_trained_on_unit_inputs_keeps_its_accuracy_with_its_own_spec(tmp_path, user_module):
    # a small MLP trained for a few seconds on raw [0, 1] pixels (mean 0, std 1: no normalization)
    x_train, y_train = load_fashion_mnist("train")
    x_test, y_test = load_fashion_mnist("test")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _epoch in range(2):
        for i in range(0, 6000, 100):
            loss = nn.functional.cross_entropy(model(x_train[i : i + 100]), y_train[i : i + 100])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        own_accuracy = accuracy(model(x_test), y_test)
    assert own_accuracy > 0.7  # it learned something, so a wrong spec has something to break
    weights = tmp_path / "unit.pt"
    torch.save(model.state_dict(), weights)
    module = user_module(
        "rp_unit_net",
        """
        from torch import nn
        from robustprune import InputSpec

        def plain():
            return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))

        def with_spec():
            return plain(), InputSpec((1, 28, 28), (0.0,), (1.0,), 10)
        """,
    )
    # the factory's spec: no flags needed
    loaded, spec = load_model(f"{module}:with_spec", weights=weights)
    assert spec.mean == (0.0,) and spec.std == (1.0,)
    assert accuracy(predict_logits(loaded, spec, x_test), y_test) == pytest.approx(own_accuracy, abs=1e-9)

    settings = ["--n-attack", "50", "--n-corruption", "50", "--no-latency", "--quiet"]
    base = ["eval", "--model", f"{module}:plain", "--weights", str(weights), *settings]
    out = tmp_path / "report.json"
    assert main([*base, "--input-shape", "1,28,28", "--num-classes", "10", "--json", str(out)]) == 0
    assert _json(out)["clean_accuracy"] == pytest.approx(own_accuracy, abs=1e-9)
    # what the old default did: feed it Fashion-MNIST-normalized inputs. That breaks it, so the spec matters.
    fm = zoo.FASHION_MNIST_SPEC
    normalized = ["--mean", str(fm.mean[0]), "--std", str(fm.std[0])]
    assert main([*base, "--input-shape", "1,28,28", "--num-classes", "10", *normalized, "--json", str(out)]) == 0
    assert _json(out)["clean_accuracy"] < own_accuracy - 0.05

    # a run folder keeps the spec: pruned and reloaded, it is still fed raw pixels
    run = tmp_path / "run"
    prune = ["baseline", "--model", f"{module}:with_spec", "--weights", str(weights), "--method", "l1_uniform"]
    assert main([*prune, "--target-params", "0.9", "--no-eval", "--quiet", "--out", str(run)]) == 0
    _, run_spec, _ = load_pruned(run, trust_code=True)
    assert run_spec == spec


def test_a_module_in_the_current_folder_is_found_as_with_python_m(tmp_path, monkeypatch):
    # the `robustprune` script puts its own folder on sys.path, not the current one as `python -m` does
    (tmp_path / "rp_cwd_net.py").write_text(CIFAR_NET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p and Path(p).resolve() != tmp_path.resolve()])
    monkeypatch.delitem(sys.modules, "rp_cwd_net", raising=False)
    namespace: dict = {}
    exec(CIFAR_NET, namespace)
    torch.save(namespace["build"]().state_dict(), tmp_path / "w.pt")
    argv = ["baseline", "--model", "rp_cwd_net:build", "--weights", "w.pt", "--method", "l1_uniform", *CIFAR_FLAGS]
    argv += ["--target-macs", "0.5"]
    assert main([*argv, "--no-eval", "--quiet", "--out", str(tmp_path / "run")]) == 0
    assert sys.path[-1] == str(tmp_path) or Path(sys.path[-1]).resolve() == tmp_path.resolve()
    sys.modules.pop("rp_cwd_net", None)


def test_spec_file_and_flags_agree(tmp_path, cifar):
    ref, weights, _ = cifar
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(CIFAR_SPEC.to_json())
    data = ["--data", str(tmp_path / "labeled.npz"), *SMALL_EVAL]
    reports = []
    for flags in (CIFAR_FLAGS, ["--spec", str(spec_file)]):
        out = tmp_path / "r.json"
        assert main(["eval", "--model", ref, "--weights", str(weights), *flags, *data, "--json", str(out)]) == 0
        reports.append(_json(out))
    assert reports[0]["clean_accuracy"] == reports[1]["clean_accuracy"]
    assert reports[0]["robust_accuracy"] == reports[1]["robust_accuracy"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "carries no input spec; give its input spec: --spec spec.json, or --input-shape"),
        (["--input-shape", "3,32,32"], "also need --num-classes"),
        (["--input-shape", "3,32,32", "--num-classes", "100", "--mean", "0.5,0.5"], "--mean has 2 values"),
        (["--input-shape", "3,x,32", "--num-classes", "100"], "--input-shape takes comma-separated integers"),
        (["--input-shape", "3,32,32", "--num-classes", "100", "--value-range", "1,0"], "--value-range must be"),
        (["--input-shape", "3,32,32", "--num-classes", "100", "--value-range", "0,1,2"], "--value-range takes LO,HI"),
        (["--input-shape", "3,32,32", "--num-classes", "100", "--std", "0"], "--std must be > 0"),
        (["--input-shape", "3,32,32", "--num-classes", "10"], "output must have shape (N, 10)"),
        (["--spec", "missing.json"], "input spec file not found"),
        (["--spec", "SPEC", "--num-classes", "100"], "give --spec FILE or the spec flags, not both"),
        (["--spec", "PARTIAL"], "input spec lacks mean, std"),
    ],
)
def test_spec_flag_errors_are_one_line_exit_2(tmp_path, cifar, capsys, flags, message):
    ref, weights, _ = cifar
    (tmp_path / "SPEC").write_text(CIFAR_SPEC.to_json())
    (tmp_path / "PARTIAL").write_text(json.dumps({"shape": [3, 32, 32], "num_classes": 100}))
    flags = [str(tmp_path / f) if f in ("SPEC", "PARTIAL", "missing.json") else f for f in flags]
    argv = ["eval", "--model", ref, "--weights", str(weights), *flags, "--data", str(tmp_path / "labeled.npz")]
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_eval_data_refusals_are_one_line(tmp_path, cifar, capsys):
    ref, weights, _ = cifar
    model = ["eval", "--model", ref, "--weights", str(weights), *CIFAR_FLAGS, "--quiet"]
    np.savez(tmp_path / "normalized.npz", x=np.full((4, 3, 32, 32), -1.5, dtype=np.float32))
    np.savez(tmp_path / "grey.npz", x=np.zeros((4, 1, 32, 32), dtype=np.float32))
    cases = [
        (["--data", str(tmp_path / "normalized.npz")], "outside the spec's pixel range"),
        (["--data", str(tmp_path / "grey.npz")], "the model's spec needs (N, 3, 32, 32)"),
        (["--data", str(tmp_path / "nothing.npz")], "evaluation data not found"),
        (["--ood", str(tmp_path / "grey.npz")], "--ood needs --data"),
        (["--data", str(tmp_path / "grey.npz"), "--data-root", str(tmp_path)], "--data-root locates Fashion-MNIST"),
        ([], "Fashion-MNIST evaluation needs a (1, 28, 28) input"),
    ]
    for flags, message in cases:
        if "--data" not in flags and not fashion_mnist_available():
            continue
        assert main([*model, *flags]) == 2, flags
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err


def test_torchscript_is_evaluated_but_not_pruned(tmp_path, cifar, capsys):
    _, _, model = cifar
    scripted = tmp_path / "net.ts"
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 3, 32, 32)), str(scripted))
    (tmp_path / "net.ts.inputspec.json").write_text(CIFAR_SPEC.to_json())
    data = ["--data", str(tmp_path / "labeled.npz"), *SMALL_EVAL]
    assert main(["eval", "--model", str(scripted), *data]) == 0
    argv = ["search", "--model", str(scripted), "--target-macs", "0.5", "--out", str(tmp_path / "r"), "--quiet"]
    assert main(argv) == 2
    assert "TorchScript, which robustprune can evaluate but not prune" in capsys.readouterr().err


def test_a_run_folder_refuses_another_spec(tmp_path, cifar, capsys):
    ref, weights, _ = cifar
    run = tmp_path / "run"
    prune = ["baseline", "--model", ref, "--weights", str(weights), *CIFAR_FLAGS, "--method", "l1_uniform"]
    assert main([*prune, "--target-macs", "0.8", "--no-eval", "--quiet", "--out", str(run)]) == 0
    argv = ["eval", "--model", str(run), "--allow-code", "--input-shape", "3,32,32", "--num-classes", "100"]
    assert main([*argv, "--data", str(tmp_path / "labeled.npz"), "--quiet"]) == 2
    assert "records its own input spec" in capsys.readouterr().err
    assert main(["eval", "--model", str(run), "--data", str(tmp_path / "labeled.npz"), "--quiet"]) == 2
    assert "--allow-code" in capsys.readouterr().err  # a folder naming user code still needs the opt-in


def test_recover_of_a_cifar_shaped_run_uses_the_run_folders_spec(tmp_path, cifar):
    ref, weights, _ = cifar
    run, recovered = tmp_path / "run", tmp_path / "recovered"
    prune = ["baseline", "--model", ref, "--weights", str(weights), *CIFAR_FLAGS, "--method", "l1_uniform"]
    assert main([*prune, "--target-macs", "0.8", "--no-eval", "--quiet", "--out", str(run)]) == 0
    tiny = ["--steps", "2", "--batch-size", "4", "--pool-size", "4", "--synthesis-steps", "2", "--no-eval", "--quiet"]
    original = ["--original", ref, "--weights", str(weights), "--allow-code"]
    assert main(["recover", str(run), "--out", str(recovered), *original, *tiny]) == 0
    _, spec, _ = load_pruned(recovered, trust_code=True)
    assert spec == CIFAR_SPEC  # no flags given to recover: the original got the run folder's spec


@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed")
@pytest.mark.parametrize(("ref", "told"), [("mypkg.nets:build", True), ("zoo:mlp", False)])
def test_a_users_model_fitting_fashion_mnist_is_told_its_numbers_are_on_fashion_mnist(monkeypatch, capsys, ref, told):
    import argparse

    from robustprune.cli import _output
    from robustprune.evaluate import harness

    monkeypatch.setattr(harness, "evaluate", lambda *a, **k: {"clean_accuracy": 0.5})  # what it says, not the eval
    model, spec = zoo.load("mlp")
    args = argparse.Namespace(model=ref, data=None, no_eval=False, seed=0, eps=0.1, data_root=None, quiet=False)
    assert _output.report_for_run(model, spec, ref, args) == {"clean_accuracy": 0.5}
    assert ("on Fashion-MNIST's test split" in capsys.readouterr().err) == told


def test_data_and_ood_are_read_once_and_checked_before_a_recovery(tmp_path, cifar, monkeypatch, capsys):
    from robustprune.cli import _common
    from robustprune.data import user

    ref, weights, _ = cifar
    reads: list[str] = []
    load = user.load_user_data
    monkeypatch.setattr(
        user, "load_user_data", lambda path, *a, **k: reads.append(Path(path).name) or load(path, *a, **k)
    )
    data = ["--data", str(tmp_path / "labeled.npz"), "--ood", str(tmp_path / "unlabeled.npz")]
    out = tmp_path / "eval.json"
    assert (
        main(["eval", "--model", ref, "--weights", str(weights), *CIFAR_FLAGS, *data, *SMALL_EVAL, "--json", str(out)])
        == 0
    )
    assert sorted(reads) == ["labeled.npz", "unlabeled.npz"]  # read once each, for the check and the report
    monkeypatch.setattr(_common, "KEEP_DATA_BYTES", 0)  # too large to hold through a run: read again for the report
    assert main(["eval", "--model", ref, "--weights", str(weights), *CIFAR_FLAGS, *data, *SMALL_EVAL]) == 0
    assert sorted(reads) == ["labeled.npz"] * 3 + ["unlabeled.npz"] * 3
    report = _json(out)
    assert report["provenance"]["data"] == str(tmp_path / "labeled.npz") and set(report["ood_auroc"]) == {
        "unlabeled.npz"
    }

    run = tmp_path / "run"
    prune = ["baseline", "--model", ref, "--weights", str(weights), *CIFAR_FLAGS, "--method", "l1_uniform"]
    assert main([*prune, "--target-macs", "0.8", "--no-eval", "--quiet", "--out", str(run)]) == 0
    np.savez(tmp_path / "grey.npz", x=np.zeros((4, 1, 32, 32), dtype=np.float32))
    original = ["--original", ref, "--weights", str(weights), "--allow-code", "--quiet"]
    for command in (["recover", str(run)], ["quantize", str(run), "--calibration", "gaussian"]):
        argv = [*command, "--out", str(tmp_path / command[0]), *original, "--data", str(tmp_path / "grey.npz")]
        assert main(argv) == 2, command
        assert "the model's spec needs (N, 3, 32, 32)" in capsys.readouterr().err
        assert not (tmp_path / command[0]).exists()  # refused before any work, no folder written


def test_a_warning_is_one_line_on_the_command_line(tmp_path, cifar, capsys):
    from PIL import Image

    ref, weights, _ = cifar
    for c in (0, 1, 2, 10):
        (tmp_path / "folders" / str(c)).mkdir(parents=True)
        Image.fromarray(np.full((32, 32, 3), 20 * c, dtype=np.uint8)).save(tmp_path / "folders" / str(c) / "1.png")
    argv = ["eval", "--model", ref, "--weights", str(weights), *CIFAR_FLAGS, "--data", str(tmp_path / "folders")]
    assert main([*argv, *SMALL_EVAL]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "warning" in line.lower()]
    assert len(lines) == 1 and lines[0].startswith("robustprune: warning: ") and "folder 10 is label 2" in lines[0]
