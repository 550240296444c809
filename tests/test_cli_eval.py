import json
import subprocess
import sys

import pytest
import torch

from robustprune import zoo
from robustprune.cli import eval as eval_cli
from robustprune.cli import main
from robustprune.data.fashion_mnist import fashion_mnist_available
from robustprune.evaluate.harness import REPORT_KEYS, EvalSettings, evaluate

needs_data = pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robustprune", *args], capture_output=True, text=True, timeout=600)


def test_version_and_help_list_subcommands():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip().startswith("robustprune ")
    out = run_cli("--help")
    assert out.returncode == 0
    for sub in ("eval", "zoo"):
        assert sub in out.stdout


@pytest.mark.parametrize("sub", ["eval", "zoo"])
def test_subcommand_help_has_examples(sub, capsys):
    with pytest.raises(SystemExit) as exc:
        main([sub, "--help"])
    assert exc.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_bad_model_reference_is_one_line_exit_2(tmp_path, capsys):
    assert main(["eval", "--model", "zoo:nope", "--json", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown zoo model" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_dir_exit_2(tmp_path, capsys):
    assert main(["eval", "--model", "zoo:mlp", "--json", str(tmp_path / "missing" / "r.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bad_eps_exit_2(capsys):
    assert main(["eval", "--model", "zoo:mlp", "--eps", "2"]) == 2
    assert "eps" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--model", "zoo:mlp", "--device", "gpu"],
        ["search", "--model", "zoo:mlp", "--target-params", "0.5", "--device", "gpu", "--out", "OUT"],
        ["bench", "--suite", "quick", "--search-device", "gpu", "--out", "OUT"],
    ],
)
def test_bad_device_is_one_line_exit_2(argv, tmp_path, capsys):
    argv = [str(tmp_path / "run") if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a device: 'gpu'" in err[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_says_so(capsys):
    assert main(["eval", "--model", "zoo:mlp", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_missing_data_names_the_package(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ROBUSTPRUNE_FASHION_MNIST", str(tmp_path / "nowhere"))
    out = tmp_path / "r.json"
    assert main(["eval", "--model", "zoo:mlp", "--json", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "apt-get install -y dataset-fashion-mnist" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [b"\x80PK weights", b'{"a": 1}', b"[1, 2]"])
def test_json_never_replaces_a_file_that_is_not_an_eval_report(tmp_path, capsys, content):
    out = tmp_path / "net.pt"  # e.g. the weights, named by mistake
    out.write_bytes(content)
    assert main(["eval", "--model", "zoo:mlp", "--json", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is not an eval report" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == content


@needs_data
def test_eval_json_has_all_keys_and_matches_manifest(tmp_path):
    out = tmp_path / "r.json"
    assert main(["eval", "--model", "zoo:mlp", "--json", str(out), "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert tuple(report) == REPORT_KEYS
    assert set(report["robust_accuracy"]) == {"fgsm", "pgd"}
    assert set(report["ood_auroc"]) == {"digits", "flipped", "noise"}
    assert set(report["latency_ms"]) == {"batch1", "batch256"}
    assert report["clean_accuracy"] == pytest.approx(zoo.manifest()["mlp"]["test_accuracy"], abs=1e-12)
    assert 0 <= report["robust_accuracy"]["pgd"] <= report["robust_accuracy"]["fgsm"] + 0.05
    assert report["robust_accuracy"]["fgsm"] < report["clean_accuracy"]
    assert report["params"] == sum(p.numel() for p in zoo.load("mlp")[0].parameters())
    assert report["provenance"]["model"] == "zoo:mlp" and report["provenance"]["seed"] == 0
    assert eval_cli._is_eval_report(out)  # so a second eval --json here replaces it


@pytest.mark.slow
@needs_data
def test_evaluation_is_deterministic_for_a_seed():
    model, spec = zoo.load("cnn")
    settings = EvalSettings(n_attack=200, n_corruption=100, n_ood=200, latency=False)
    a = evaluate(model, spec, settings=settings, quiet=True)
    b = evaluate(model, spec, settings=settings, quiet=True)
    for key in ("clean_accuracy", "robust_accuracy", "corruption_accuracy_per", "ood_auroc", "ece", "macs"):
        assert a[key] == b[key]


@needs_data
def test_evaluate_leaves_model_untouched():
    model, spec = zoo.load("mlp")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    evaluate(model, spec, settings=EvalSettings(n_attack=50, n_corruption=50, n_ood=50, latency=False), quiet=True)
    assert model.training
    assert all((before[k] == v).all() for k, v in model.state_dict().items())


@needs_data
def test_fashion_mnist_reaches_a_model_of_another_pixel_range_as_its_own_pixels():
    from robustprune import InputSpec
    from robustprune.evaluate.paired import PairedSettings, correctness

    model, spec = zoo.load("mlp")
    low, high = 0.0, 255.0  # the same model, described for pixels in 0..255: inputs are normalized the same
    bytes_spec = InputSpec(spec.shape, tuple(m * high for m in spec.mean), tuple(s * high for s in spec.std),
                           spec.num_classes, (low, high))  # fmt: skip
    settings = EvalSettings(n_attack=20, n_corruption=10, n_ood=50, latency=False)
    unit, scaled = (evaluate(model, s, settings=settings, quiet=True) for s in (spec, bytes_spec))
    assert scaled["clean_accuracy"] == pytest.approx(unit["clean_accuracy"], abs=1e-9)
    assert scaled["ood_auroc"] == pytest.approx(unit["ood_auroc"], abs=1e-6)
    paired = PairedSettings(split="val", n_pgd=10, n_apgd=1, apgd=False)
    assert torch.equal(correctness(model, bytes_spec, paired)["clean"], correctness(model, spec, paired)["clean"])
