"""The search on a CUDA model (skipped where there is no GPU; run on a lent device)."""

import pytest
import torch

from robustprune import zoo
from robustprune.probes.probeset import ProbeConfig
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.search import SearchConfig, search

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TINY_PROBES = ProbeConfig(
    synthetic=SyntheticConfig(kind="inversion", n=48, steps=10, batch_size=48), attack_steps=2, n_undesired=24
)


@pytest.mark.parametrize(
    "name, weights",
    [
        ("mlp", None),  # no BN: merge saliency and neuron merging
        ("cnn", None),  # BN: the auto criterion (Taylor vs l1), BN re-estimation
        ("cnn", {"fidelity": 1.0, "attack_robustness": 0.5}),  # a fresh attack on each candidate
    ],
)
def test_search_runs_on_a_cuda_model(name, weights, tmp_path):
    model, spec = zoo.load(name)
    model = model.to("cuda")
    extra = {"weights": weights} if weights else {}
    config = SearchConfig(target_macs=0.7, steps=2, trials=4, probes=TINY_PROBES, max_increment=0.3, **extra)
    result = search(model, spec, config=config, cache_dir=tmp_path, quiet=True)
    assert result.target_reached
    assert all(p.device.type == "cuda" for p in result.model.parameters())
    assert all(p.device.type == "cuda" for p in model.parameters()), "the user's model stays where it was"
    out = result.model(torch.rand(4, *spec.shape, device="cuda"))
    assert out.shape == (4, 10) and out.device.type == "cuda"


def test_cli_search_on_cuda_writes_a_loadable_run(tmp_path, monkeypatch):
    from robustprune.cli import main
    from robustprune.structure import load_pruned

    monkeypatch.setenv("ROBUSTPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    argv = ["search", "--model", "zoo:cnn", "--target-macs", "0.7", "--device", "cuda", "--steps", "2"]
    argv += ["--trials", "3", "--n-probes", "32", "--probe-steps", "5", "--no-eval", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    model, _, _ = load_pruned(out)  # saved from the GPU, loads on the CPU
    assert next(model.parameters()).device.type == "cpu"
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
