"""APGD-CE (AutoAttack's first component) and per-image robust correctness."""

import pytest
import torch

from robustprune.evaluate.attacks import adversarial_examples, robust_accuracy, robust_correct
from robustprune.evaluate.metrics import predict_logits
from robustprune.zoo import FASHION_MNIST_SPEC as SPEC
from robustprune.zoo.architectures import ARCHITECTURES


@pytest.fixture(scope="module")
def cnn_setup():
    torch.manual_seed(0)
    model = ARCHITECTURES["cnn"]().eval()
    pixels = torch.rand(24, *SPEC.shape)
    labels = predict_logits(model, SPEC, pixels).argmax(dim=1)
    return model, pixels, labels


def test_apgd_stays_in_the_ball_and_changes_the_input(cnn_setup):
    model, pixels, labels = cnn_setup
    x_adv = adversarial_examples(model, SPEC, pixels, labels, attack="apgd-ce", eps=0.1, steps=5, batch_size=12)
    assert x_adv.shape == pixels.shape
    assert (x_adv - pixels).abs().max() <= 0.1 + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert not torch.equal(x_adv, pixels)


def test_apgd_is_at_least_as_strong_as_fgsm_here_and_harmless_at_eps_zero(cnn_setup):
    model, pixels, labels = cnn_setup
    apgd = robust_accuracy(model, SPEC, pixels, labels, attack="apgd-ce", eps=0.1, steps=10)
    fgsm = robust_accuracy(model, SPEC, pixels, labels, attack="fgsm", eps=0.1)
    assert apgd <= fgsm
    assert apgd < 1.0
    assert robust_accuracy(model, SPEC, pixels, labels, attack="apgd-ce", eps=0.0, steps=3) == 1.0


@pytest.mark.parametrize("attack", [None, "pgd", "apgd-ce"])
def test_robust_correct_is_per_image_and_matches_the_accuracy(cnn_setup, attack):
    model, pixels, labels = cnn_setup
    correct = robust_correct(model, SPEC, pixels, labels, attack=attack, eps=0.1, steps=4, seed=3)
    assert correct.dtype == torch.bool and correct.shape == labels.shape
    if attack is None:
        assert correct.all()
    else:
        expected = robust_accuracy(model, SPEC, pixels, labels, attack=attack, eps=0.1, steps=4, seed=3)
        assert correct.float().mean().item() == pytest.approx(expected)
