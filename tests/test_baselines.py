import json

import pytest
import torch

from robustprune import zoo
from robustprune.baselines import METHODS, baseline
from robustprune.cli import main
from robustprune.structure import PruneSpace, load_pruned
from robustprune.targets import Target


def inputs_for(method: str) -> torch.Tensor | None:
    """The Taylor baselines rank on (synthetic) inputs; any normalized batch exercises them."""
    if method not in ("taylor_uniform", "taylor_l1_uniform"):
        return None
    return torch.randn(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "method", ["l1_uniform", "taylor_uniform", "taylor_l1_uniform", "random_uniform", "global_magnitude"]
)
@pytest.mark.parametrize("name", ["cnn", "resnet20", "mobilenetv2"])
@pytest.mark.parametrize("fraction", [0.7, 0.5])
def test_baselines_land_within_two_percent_below_target(method, name, fraction):
    model, spec = zoo.load(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = baseline(model, spec, method, target_macs=fraction, inputs=inputs_for(method))
    kept = result.kept_fraction["macs"]
    assert fraction - 0.02 <= kept <= fraction + 1e-9
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert sum(p.numel() for p in result.model.parameters()) == result.params < result.space.full_params


@pytest.mark.parametrize("method", METHODS)
def test_mlp_params_target(method):
    model, spec = zoo.load("mlp")
    result = baseline(model, spec, method, target_params=0.5, inputs=inputs_for(method))
    assert 0.48 <= result.kept_fraction["params"] <= 0.5 + 1e-9
    x = torch.rand(3, 1, 28, 28)
    assert result.model(x).shape == (3, 10)


def test_l1_uniform_keeps_the_largest_filters_and_even_fractions():
    model, spec = zoo.load("resnet20")
    result = baseline(model, spec, "l1_uniform", target_macs=0.5)
    fractions = [len(result.candidate[g.name]) / g.size for g in result.space.groups]
    assert max(fractions) - min(fractions) <= 0.1, "uniform allocation up to the final fill"
    group = result.space.groups[-1]
    conv = dict(model.named_modules())[group.members[0]]
    norms = conv.weight.detach().abs().flatten(1).sum(1)
    kept = set(result.candidate[group.name])
    dropped = [c for c in range(group.size) if c not in kept]
    # group importance sums over coupled layers, so compare loosely: kept filters are larger on average
    assert norms[list(kept)].mean() > norms[dropped].mean()


def test_random_uniform_depends_on_seed_and_is_deterministic():
    model, spec = zoo.load("cnn")
    a = baseline(model, spec, "random_uniform", target_macs=0.5, seed=0).candidate
    b = baseline(model, spec, "random_uniform", target_macs=0.5, seed=0).candidate
    c = baseline(model, spec, "random_uniform", target_macs=0.5, seed=1).candidate
    assert a == b and a != c


def test_bad_targets_and_methods():
    model, spec = zoo.load("cnn")
    space = PruneSpace(model, spec)
    for bad in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"fraction in \(0, 1\)"):
            baseline(model, spec, "l1_uniform", target_macs=bad, space=space)
    with pytest.raises(ValueError, match="give a target"):
        Target()
    with pytest.raises(ValueError, match="pass inputs="):
        baseline(model, spec, "taylor_uniform", target_macs=0.5, space=space)
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline(model, spec, "magic", target_macs=0.5, space=space)
    with pytest.raises(ValueError, match="l1_uniform"):
        baseline(model, spec, "paoding", target_macs=0.5, space=space)
    with pytest.raises(ValueError, match="cannot be reached"):
        baseline(model, spec, "l1_uniform", target_macs=0.001, space=space)


def test_cli_baseline_writes_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "baseline",
            "--model",
            "zoo:mlp",
            "--method",
            "paoding",
            "--target-params",
            "0.5",
            "--out",
            str(out),
            "--quiet",
            "--no-eval",
        ]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["pruned.pt", "report.json", "spec.json"]
    report = json.loads((out / "report.json").read_text())
    model, _, spec_data = load_pruned(out)
    assert report["params"] == sum(p.numel() for p in model.parameters()) == spec_data["params"]
    assert report["provenance"]["method"] == "paoding"


def test_cli_baseline_usage_errors_leave_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["baseline", "--model", "zoo:mlp", "--method", "l1_uniform", "--out", str(out)]) == 2
    assert "--target-macs" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit) as exc:
        main(["baseline", "--model", "zoo:mlp", "--method", "l1_uniform", "--target-macs", "2", "--out", str(out)])
    assert exc.value.code == 2
    assert (
        main(["baseline", "--model", "zoo:cnn", "--method", "paoding", "--target-macs", "0.5", "--out", str(out)]) == 2
    )
    assert not any(out.glob("*.json")) if out.exists() else True


def test_taylor_l1_uniform_keeps_the_rank_sum_top_and_differs_from_both_parts():
    from robustprune.criteria import all_scores

    model, spec = zoo.load("cnn")
    inputs = inputs_for("taylor_l1_uniform")
    result = baseline(model, spec, "taylor_l1_uniform", target_macs=0.5, inputs=inputs)
    scores = all_scores(result.space, "taylor_l1", inputs=inputs)
    for group in result.space.groups:
        kept = list(result.candidate[group.name])
        dropped = [c for c in range(group.size) if c not in kept]
        if dropped:
            assert scores[group.name][kept].min() >= scores[group.name][dropped].max()
    others = [
        baseline(model, spec, m, target_macs=0.5, inputs=inputs).candidate for m in ("taylor_uniform", "l1_uniform")
    ]
    assert all(result.candidate != other for other in others)
    with pytest.raises(ValueError, match="taylor_l1_uniform ranks channels on synthetic inputs"):
        baseline(model, spec, "taylor_l1_uniform", target_macs=0.5)


def test_taylor_uniform_keeps_the_channels_taylor_ranks_highest():
    from robustprune.criteria import all_scores

    model, spec = zoo.load("cnn")
    inputs = inputs_for("taylor_uniform")
    result = baseline(model, spec, "taylor_uniform", target_macs=0.5, inputs=inputs)
    scores = all_scores(result.space, "taylor_synthetic", inputs=inputs)
    for group in result.space.groups:
        kept = set(result.candidate[group.name])
        dropped = [c for c in range(group.size) if c not in kept]
        if dropped:
            assert scores[group.name][list(kept)].min() >= scores[group.name][dropped].max()


def test_cli_offers_every_baseline():
    from robustprune.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["baseline"]
    method = next(a for a in sub._actions if a.dest == "method")
    assert tuple(method.choices) == METHODS
