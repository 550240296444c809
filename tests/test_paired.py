"""Per-image correctness on fixed images (the ablation's paired evaluation) and its suite settings."""

import json

import pytest
import torch
from torch import nn

from robustprune.bench import load_suite, suite_settings
from robustprune.data.fashion_mnist import fashion_mnist_available, load_eval_split
from robustprune.evaluate.paired import PairedSettings, correctness, pack, unpack
from robustprune.spec import InputSpec

SPEC = InputSpec(shape=(1, 8, 8), mean=(0.5,), std=(0.5,), num_classes=3)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3)).eval()


def _images(n: int = 40):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, *SPEC.shape, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_subsets_are_fixed_by_the_image_seed_alone():
    x, y = _images()
    model = _model()
    settings = PairedSettings(eps=0.0, n_pgd=10, n_apgd=5, pgd_steps=2)
    out = correctness(model, SPEC, settings, images=(x, y))
    assert out["clean"].shape == (40,) and out["pgd"].shape == (10,) and out["apgd"].shape == (5,)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(settings.image_seed))
    # at eps 0 an attack changes nothing, so each subset's correctness is the clean one on the chosen images
    assert torch.equal(out["pgd"], out["clean"][order[:10]])
    assert torch.equal(out["apgd"], out["clean"][order[:5]])
    other = correctness(model, SPEC, PairedSettings(eps=0.0, n_pgd=10, apgd=False, image_seed=7), images=(x, y))
    assert "apgd" not in other
    order7 = torch.randperm(40, generator=torch.Generator().manual_seed(7))
    assert torch.equal(other["pgd"], out["clean"][order7[:10]])


def test_an_attack_only_lowers_correctness_here():
    x, y = _images()
    model = _model()
    y = model(SPEC.normalize(x)).argmax(1)  # the model is right on every image
    out = correctness(model, SPEC, PairedSettings(eps=0.3, n_pgd=40, n_apgd=40, pgd_steps=5), images=(x, y))
    assert out["clean"].all()
    assert out["pgd"].float().mean() < 1.0


def test_pack_round_trips_and_settings_are_checked():
    values = torch.tensor([True, False, False, True])
    assert pack(values) == "1001" and torch.equal(unpack(pack(values)), values)
    for bad in ({"split": "train"}, {"eps": 2.0}, {"n_pgd": 0}):
        with pytest.raises(ValueError):
            PairedSettings(**bad)


def test_suites_take_paired_settings_and_old_cells_keep_their_settings(tmp_path):
    suite = {"models": {"mlp": "params"}, "methods": ["l1_uniform"], "targets": [0.5], "seeds": [0]}
    (tmp_path / "plain.json").write_text(json.dumps(suite))
    plain = load_suite(str(tmp_path / "plain.json"))
    assert suite_settings(plain) == {"search": {}, "eval": {}}  # cells written before paired settings still match
    (tmp_path / "paired.json").write_text(json.dumps({**suite, "paired": {"split": "val", "n_pgd": 100}}))
    assert suite_settings(load_suite(str(tmp_path / "paired.json")))["paired"] == {"split": "val", "n_pgd": 100}
    (tmp_path / "bad.json").write_text(json.dumps({**suite, "paired": {"split": "train"}}))
    with pytest.raises(ValueError, match="paired settings"):
        load_suite(str(tmp_path / "bad.json"))


@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed")
def test_the_validation_split_is_the_held_out_tail_of_train():
    x, y = load_eval_split("val")
    assert x.shape == (5000, 1, 28, 28) and y.shape == (5000,)
    with pytest.raises(ValueError, match="evaluation split"):
        load_eval_split("train")


@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed")
def test_the_harness_evaluates_on_the_validation_split_when_asked():
    from robustprune import zoo
    from robustprune.evaluate.harness import EvalSettings, evaluate
    from robustprune.evaluate.metrics import accuracy, predict_logits

    model, spec = zoo.load("mlp")
    settings = EvalSettings(split="val", n_attack=20, n_corruption=20, n_ood=50, latency=False, eps=0.01)
    report = evaluate(model, spec, settings=settings, quiet=True)
    x, y = load_eval_split("val")
    assert report["clean_accuracy"] == pytest.approx(accuracy(predict_logits(model, spec, x), y))
    assert report["provenance"]["settings"]["split"] == "val"
    with pytest.raises(ValueError, match="split"):
        EvalSettings(split="train")


class _TableModel(nn.Module):
    """Returns preset logits for image i, whose pixels all equal i / n (read back from the first pixel)."""

    def __init__(self, logits: torch.Tensor, spec: InputSpec):
        super().__init__()
        self.logits, self.spec = logits, spec

    def forward(self, x):
        pixel = x.flatten(1)[:, 0] * self.spec.std[0] + self.spec.mean[0]
        return self.logits[(pixel * len(self.logits)).round().long()]


def test_a_saved_model_reproduces_its_row_up_to_rounding_ties_only():
    from robustprune.bench import reproduces_row

    spec = InputSpec(shape=(1, 2, 2), mean=(0.5,), std=(0.25,), num_classes=3)
    n = 4
    x = (torch.arange(n).float() / n).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    y = torch.tensor([0, 1, 2, 0])
    logits = torch.tensor([[5.0, 1, 0], [0, 4, 1], [1, 0, 3], [2.0, 2.0 + 1e-6, 0]])  # image 3: a rounding tie
    model = _TableModel(logits, spec)
    correct = torch.tensor([True, True, True, False])
    row = {"per_image": {"clean": pack(correct)}}
    assert reproduces_row(model, spec, row, images=(x, y))
    tie_flipped = correct.clone()
    tie_flipped[3] = True  # another CPU rounded image 3 the other way
    assert reproduces_row(model, spec, {"per_image": {"clean": pack(tie_flipped)}}, images=(x, y))
    clear_flipped = correct.clone()
    clear_flipped[1] = False  # a margin of 3: another model
    assert not reproduces_row(model, spec, {"per_image": {"clean": pack(clear_flipped)}}, images=(x, y))
    assert not reproduces_row(model, spec, {"per_image": {"clean": pack(correct[:3])}}, images=(x, y))
