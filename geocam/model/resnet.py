"""A small ResNet for inference, with timm's module names, so scene runs need not import timm.

``import timm`` pulls torchvision, which imports ``torch._dynamo``: seconds and hundreds of MB
per process. Scene runs only need the forward pass of a standard ResNet, so
:func:`build_resnet` rebuilds timm's ``resnet18/34/50/101/152`` (stem 7x7/2 + max pool, basic
or bottleneck blocks with the stride on the 3x3 conv, 1x1 conv + BN shortcuts, global average
pool, linear head) with the same state-dict keys. ``tests/test_model_resnet.py`` checks it against
timm. Training still builds its networks with timm.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: Block type and blocks per stage of the ResNets built here.
LAYOUTS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (timm ``BasicBlock``)."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, width, stride)

    def forward(self, x: Tensor) -> Tensor:
        """Residual block."""
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        result: Tensor = self.act2(out + shortcut)
        return result


class Bottleneck(nn.Module):
    """1x1 - 3x3 (stride) - 1x1 convolutions (timm ``Bottleneck``)."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: Tensor) -> Tensor:
        """Residual block."""
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        result: Tensor = self.act3(out + shortcut)
        return result


class GlobalAvgPool(nn.Module):
    """Average over rows and columns; ``pool_type`` tells geocam's CAM code it is an average."""

    pool_type = "avg"

    def forward(self, x: Tensor) -> Tensor:
        """(batch, channels, rows, cols) -> (batch, channels)."""
        return x.mean(dim=(2, 3))


class ResNet(nn.Module):
    """A ResNet classifier with timm's attribute names and ``forward_features``."""

    def __init__(self, architecture: str, in_channels: int, num_classes: int) -> None:
        """Build an untrained network.

        Args:
            architecture: a key of :data:`LAYOUTS`.
            in_channels: input bands.
            num_classes: output logits.
        """
        super().__init__()
        kind, depths = LAYOUTS[architecture]
        block: type[BasicBlock | Bottleneck] = BasicBlock if kind == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_ch = 64
        for i, (depth, width) in enumerate(zip(depths, (64, 128, 256, 512), strict=True)):
            blocks = []
            for j in range(depth):
                blocks.append(block(in_ch, width, 2 if (j == 0 and i > 0) else 1))
                in_ch = width * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_features = in_ch
        self.global_pool = GlobalAvgPool()
        self.fc = nn.Linear(in_ch, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """Last stage's feature map, (batch, channels, rows / 32, cols / 32)."""
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
        return x

    def get_classifier(self) -> nn.Linear:
        """The linear head."""
        return self.fc

    def forward(self, x: Tensor) -> Tensor:
        """Logits, (batch, classes)."""
        logits: Tensor = self.fc(self.global_pool(self.forward_features(x)))
        return logits


def build_resnet(architecture: str, in_channels: int, num_classes: int) -> ResNet | None:
    """The light ResNet for ``architecture``, or None when it is not one of :data:`LAYOUTS`."""
    if architecture not in LAYOUTS:
        return None
    return ResNet(architecture, in_channels, num_classes)


def _conv_bn_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """Names of the (conv, BatchNorm) pairs directly inside ``module``."""
    if isinstance(module, nn.Sequential) and len(module) == 2:  # a 1x1 conv + BN shortcut
        conv, bn = module[0], module[1]
        return (
            [("0", "1")] if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) else []
        )
    return [
        (f"conv{i}", f"bn{i}")
        for i in (1, 2, 3)
        if isinstance(getattr(module, f"conv{i}", None), nn.Conv2d)
        and isinstance(getattr(module, f"bn{i}", None), nn.BatchNorm2d)
    ]


def fold_batch_norms(net: ResNet) -> ResNet:
    """Fold every BatchNorm into the convolution before it, in place (inference only).

    An eval-mode BN after a bias-free conv is a per-channel affine map, so the pair is one conv
    with ``w * s`` and bias ``beta - mean * s``, ``s = gamma / sqrt(var + eps)`` (computed in
    float32, written into the weights). The BNs become ``nn.Identity``: one pass over each
    activation fewer.
    """
    for module in list(net.modules()):
        for conv_name, bn_name in _conv_bn_pairs(module):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if bn.running_mean is None or bn.running_var is None or conv.bias is not None:
                continue
            w = conv.weight
            scale = bn.weight.float() / torch.sqrt(bn.running_var.float() + bn.eps)
            with torch.no_grad():  # in place: no second copy of the weights stays behind
                w.copy_(w.float() * scale[:, None, None, None])
            bias = bn.bias.float() - bn.running_mean.float() * scale
            conv.bias = nn.Parameter(bias.to(w.dtype), requires_grad=False)
            setattr(module, bn_name, nn.Identity())
    return net
