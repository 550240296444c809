"""A Linear's channels are its last axis, also on (N, L, C) inputs with L == C (a conv's are axis 1)."""

import torch
from torch import nn

from robustprune.criteria import all_scores
from robustprune.spec import InputSpec
from robustprune.structure import PruneSpace, export, masked

torch.set_num_threads(1)

SPEC = InputSpec(shape=(6, 6), mean=(0.0,), std=(1.0,), num_classes=3)  # 6 tokens of 6 features


class Tokens(nn.Module):
    """Per-token Linear layers on (N, L, C) with L == C, then a mean over the tokens."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 6)
        self.fc2 = nn.Linear(6, 5)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.head(x.mean(1))


def tokens() -> nn.Module:
    torch.manual_seed(0)
    model = Tokens().eval()
    with torch.no_grad():
        model.fc1.bias.add_(0.5)  # most units on, so a wrong mask cannot hide behind ReLU zeros
    return model


def test_masked_matches_the_exported_model_on_token_inputs():
    model = tokens()
    space = PruneSpace(model, SPEC)
    assert set(space.group_names()) == {"fc1", "fc2"}
    candidates = [{"fc1": [0, 2, 5], "fc2": [1, 2, 3, 4]}, {"fc1": [1, 3], "fc2": [0, 4]}]
    x = torch.randn(7, *SPEC.shape)
    for candidate in candidates:
        exported = export(space, candidate)
        with torch.no_grad():
            pruned = exported(x)
            with masked(space, candidate):
                assert torch.allclose(model(x), pruned, atol=1e-5)


def test_taylor_importance_reads_the_last_axis_of_a_token_linear():
    model = tokens()
    with torch.no_grad():  # channel 2 of fc1 is dead: it outputs zero at every token, so it scores zero
        model.fc1.weight[2] = 0.0
        model.fc1.bias[2] = 0.0
    space = PruneSpace(model, SPEC)
    scores = all_scores(space, "taylor_synthetic", inputs=torch.randn(16, *SPEC.shape))["fc1"]
    assert scores[2] == 0 and (scores[[0, 1, 3, 4, 5]] > 0).all()
