"""Reference architectures for 1x28x28 inputs and 10 classes.

They cover the structures a pruner must handle: plain dense layers (mlp), conv +
BN + dense heads behind a flatten (cnn, vgg11_bn), residual adds with projection
shortcuts (resnet20), depthwise convs in inverted residuals (mobilenetv2), concatenated
branches around residual adds (inception), and channel LayerNorm + GELU without any
BatchNorm (convnext).
"""

from __future__ import annotations

import torch
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


def _conv_bn_relu(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(*_conv_bn(c_in, c_out, kernel, stride, groups), nn.ReLU())


class InceptionBlock(nn.Module):
    """Four concatenated branches (1x1; 1x1->3x3; 1x1->depthwise 3x3->1x1; 3x3 average pool->1x1), a 1x1 projection
    back to the input width, and a residual add."""

    def __init__(self, channels: int, branch: int) -> None:
        super().__init__()
        self.b1 = _conv_bn_relu(channels, branch)
        self.b2 = nn.Sequential(_conv_bn_relu(channels, branch), _conv_bn_relu(branch, branch, 3))
        self.b3 = nn.Sequential(
            _conv_bn_relu(channels, branch),
            _conv_bn_relu(branch, branch, 3, groups=branch),
            _conv_bn_relu(branch, branch),
        )
        self.b4 = nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), _conv_bn_relu(channels, branch))
        self.project = nn.Sequential(*_conv_bn(4 * branch, channels, 1))
        self.relu = nn.ReLU()

    def forward(self, x):
        out = torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)
        return self.relu(x + self.project(out))


class Inception(nn.Module):
    """Small Inception-style net: a 3x3 stem at 28x28, then a strided 3x3 conv and two inception blocks
    at 14x14 (64 wide) and again at 7x7 (128 wide)."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (32, 64, 128), blocks: int = 2) -> None:
        super().__init__()
        stages: list[nn.Module] = [_conv_bn_relu(1, widths[0], 3)]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            stages.append(_conv_bn_relu(c_in, c_out, 3, stride=2))  # downsample
            stages += [InceptionBlock(c_out, c_out * 3 // 8) for _ in range(blocks)]
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def inception(num_classes: int = 10) -> nn.Module:
    return Inception(num_classes)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor: permute to NHWC, nn.LayerNorm, permute back.

    The same form as torchvision's ConvNeXt LayerNorm2d, which torch-pruning prunes by slicing the affine parameters.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 -> channel LayerNorm -> 1x1 expand 4x -> GELU -> 1x1 project, plus the residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Conv2d(dim, 4 * dim, 1)
        self.act = nn.GELU()
        self.pwconv2 = nn.Conv2d(4 * dim, dim, 1)

    def forward(self, x):
        return x + self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x)))))


class ConvNeXt(nn.Module):
    """Small ConvNeXt-style net, no BatchNorm: 2x2 patchify stem (28->14), stages at 14, 7 and 3 pixels,
    LayerNorm + 2x2 strided conv between stages, global average pool + LayerNorm + linear head."""

    def __init__(
        self, num_classes: int = 10, dims: tuple[int, ...] = (32, 64, 128), depths: tuple[int, ...] = (2, 2, 2)
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, dims[0], 2, stride=2), LayerNorm2d(dims[0], eps=1e-6))
        stages: list[nn.Module] = []
        for i, (dim, depth) in enumerate(zip(dims, depths, strict=True)):
            if i > 0:
                stages.append(nn.Sequential(LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dim, 2, 2)))
            stages += [ConvNeXtBlock(dim) for _ in range(depth)]
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        return self.head(self.norm(self.pool(self.stages(self.stem(x))).flatten(1)))


def convnext(num_classes: int = 10) -> nn.Module:
    return ConvNeXt(num_classes)


ARCHITECTURES = {
    "mlp": mlp,
    "cnn": cnn,
    "resnet20": resnet20,
    "vgg11_bn": vgg11_bn,
    "mobilenetv2": mobilenetv2,
    "inception": inception,
    "convnext": convnext,
}
