"""The networks a model file holds: timm classifiers to train, geocam's light ResNet to run."""

from __future__ import annotations

import logging

from torch import nn

from .resnet import build_resnet

log = logging.getLogger(__name__)


def build_net(architecture: str, in_channels: int, num_classes: int) -> nn.Module:
    """Create an untrained timm classifier (global average pool + linear head).

    Args:
        architecture: timm model name; geocam's CAM needs a GAP + linear head (ResNets).
        in_channels: number of input bands.
        num_classes: number of output logits.
    """
    import timm  # heavy (pulls torchvision): only where a trainable timm network is needed

    net: nn.Module = timm.create_model(
        architecture, pretrained=False, num_classes=num_classes, in_chans=in_channels
    )
    return net


def build_inference_net(architecture: str, in_channels: int, num_classes: int) -> nn.Module:
    """A network to load weights into for inference: geocam's light ResNet, else timm's.

    Both have timm's state-dict keys; the light one spares scene runs importing timm.
    """
    return build_resnet(architecture, in_channels, num_classes) or build_net(
        architecture, in_channels, num_classes
    )
