"""Reference architectures for 1x28x28 inputs and 10 classes.

They cover the structures a pruner must handle: plain dense layers (mlp), conv +
BN + dense heads behind a flatten (cnn, vgg11_bn), residual adds with projection
shortcuts (resnet20), and depthwise convs in inverted residuals (mobilenetv2).
"""

from __future__ import annotations

from torch import nn


def mlp(num_classes: int = 10) -> nn.Module:
    """784-128-128-64-10 ReLU network (the Paoding paper's MNIST MLP)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 128),
        nn.ReLU(),
        nn.Linear(128, 128),
        nn.ReLU(),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )


def _conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]


def cnn(num_classes: int = 10) -> nn.Module:
    """Three conv+BN+ReLU+pool stages (32/64/64) and two dense layers."""
    return nn.Sequential(
        *_conv_bn(1, 32),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 14x14
        *_conv_bn(32, 64),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 7x7
        *_conv_bn(64, 64),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 3x3
        nn.Flatten(),
        nn.Linear(64 * 3 * 3, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            # projection shortcut (option B): traceable and prunable, unlike zero-padding
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """CIFAR-style ResNet-20: 3 stages x 3 basic blocks, widths 16/32/64."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        layers, c_in = [], widths[0]
        for stage, width in enumerate(widths):
            blocks = []
            for i in range(3):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(c_in, width, stride))
                c_in = width
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.pool(x).flatten(1))


def resnet20(num_classes: int = 10) -> nn.Module:
    return ResNet20(num_classes)


class VGG(nn.Module):
    def __init__(self, cfg: list, num_classes: int = 10, hidden: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [*_conv_bn(c_in, item), nn.ReLU()]
                c_in = item
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(c_in, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def vgg11_bn(num_classes: int = 10) -> nn.Module:
    """VGG-11 with BN, eight convs at a quarter of the ImageNet widths; 28->14->7->3."""
    return VGG([32, "M", 64, "M", 128, 128, "M", 128, 128, 128, 128], num_classes)


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_conv_bn(c_in, hidden, 1), nn.ReLU6()]
        layers += [*_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6()]
        layers += _conv_bn(hidden, c_out, 1)
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and c_in == c_out

    def forward(self, x):
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """Narrow MobileNetV2 for 28x28: inverted residuals with depthwise convs.

    The stem has stride 2 (28->14) and expansion is 4: depthwise backward passes
    are slow on CPU, and this keeps training under 1.5 minutes an epoch on 2 cores.
    """

    # (expansion, channels, blocks, first stride)
    SETTINGS = ((1, 16, 1, 1), (4, 24, 2, 1), (4, 32, 3, 2), (4, 64, 2, 1))

    def __init__(self, num_classes: int = 10, last_channels: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_conv_bn(1, 16, stride=2), nn.ReLU6()]
        c_in = 16
        for expand, channels, blocks, stride in self.SETTINGS:
            for i in range(blocks):
                layers.append(InvertedResidual(c_in, channels, stride if i == 0 else 1, expand))
                c_in = channels
        layers += [*_conv_bn(c_in, last_channels, 1), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last_channels, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def mobilenetv2(num_classes: int = 10) -> nn.Module:
    return MobileNetV2(num_classes)


ARCHITECTURES = {
    "mlp": mlp,
    "cnn": cnn,
    "resnet20": resnet20,
    "vgg11_bn": vgg11_bn,
    "mobilenetv2": mobilenetv2,
}
