"""Every public entry point that runs the caller's model leaves each module's own train/eval flag as it was."""

import pytest
import torch
from torch import nn

from robustprune._modes import eval_mode
from robustprune.compensate import bn_reestimate_overrides
from robustprune.criteria import all_scores
from robustprune.probes.probeset import ProbeConfig, build_probes
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.proxies import score
from robustprune.spec import InputSpec, validate_model
from robustprune.structure import PruneSpace

SPEC = InputSpec(shape=(1, 8, 8), mean=(0.5,), std=(0.25,), num_classes=3)
PROBES = ProbeConfig(
    synthetic=SyntheticConfig(kind="inversion", n=8, steps=2, batch_size=8), attack_steps=1, n_undesired=4
)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.conv2, self.bn2 = nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def frozen_net() -> nn.Module:
    """A model in train mode with one BatchNorm frozen in eval mode (fine-tuning with frozen statistics)."""
    torch.manual_seed(0)
    model = Net().train()
    model.bn1.eval()
    return model


def flags(model: nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


def test_eval_mode_restores_each_flag():
    model = frozen_net()
    before = flags(model)
    with eval_mode(model):
        assert not any(flags(model).values())
    assert flags(model) == before and before["bn1"] is False and before[""] is True


def test_public_entry_points_keep_a_frozen_submodule_frozen(tmp_path):
    model = frozen_net()
    before = flags(model)
    changed = []

    def check(name, call):
        for module_name, module in model.named_modules():  # the state under test, whatever came before
            module.training = before[module_name]
        out = call()
        if flags(model) != before:
            changed.append(name)
        return out

    check("validate_model", lambda: validate_model(model, SPEC))
    space = check("PruneSpace", lambda: PruneSpace(model, SPEC))
    probes = check("build_probes", lambda: build_probes(model, SPEC, space.output_layer, PROBES, cache_dir=tmp_path))
    candidate = {g.name: list(range(g.size // 2)) for g in space.groups}
    check("proxies.score", lambda: score(space, probes, candidate))
    inputs = probes.inputs()[:8]
    check("bn_reestimate_overrides", lambda: bn_reestimate_overrides(space, candidate, inputs))
    check("taylor importance", lambda: all_scores(space, "taylor_synthetic", inputs=inputs))
    assert changed == []


@pytest.mark.parametrize("training", [True, False])
def test_entry_points_keep_uniform_modes(training):
    model = frozen_net().train(training)
    before = flags(model)
    space = PruneSpace(model, SPEC)
    all_scores(space, "taylor_l1", inputs=torch.randn(4, *SPEC.shape))
    assert flags(model) == before
