"""What every CAM engine shares: the :class:`Engine` seam, its scores, the network's CAM head.

Engines take a block of rendered pixels plus the window origins inside it and yield
:class:`WindowScores` per batch. :class:`~geocam.cam.exact.ExactEngine` scores each window on its
own, as in training; :class:`~geocam.cam.dense.DenseEngine` runs the backbone once per block and
pools windows from the feature map. A new method is one more module behind the same protocol,
registered in :func:`geocam.cam.make_engine` and :func:`geocam.cam.check_grid`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from ..config import Precision
from ..errors import ModelFormatError


@dataclass(frozen=True, slots=True)
class WindowScores:
    """Scores of a batch of windows.

    A window's logits are its CAM's spatial mean plus the head's bias (GAP + linear head).

    Attributes:
        probs: ``(windows, classes)`` float32 softmax probabilities.
        cams: ``(windows, classes, rows, cols)`` float32 raw CAMs on the feature grid.
    """

    probs: npt.NDArray[np.float32]
    cams: npt.NDArray[np.float32]


@runtime_checkable
class Engine(Protocol):
    """Turns rendered pixels and window origins into per-window scores."""

    #: ``"exact"`` or ``"dense"``, as run.json records it.
    name: str
    #: The linear head's bias ``(classes,)`` float32 (the class map adds it to the CAM).
    bias: npt.NDArray[np.float32]
    #: The torch device the network runs on.
    device: torch.device
    #: The resolved precision: ``"bf16"`` or ``"fp32"``.
    precision: Precision
    #: Pixels the engine wants around the windows of a block (read where the scene has them).
    context_px: int

    def score(
        self,
        image: npt.NDArray[np.float32],
        origins_rc: Sequence[tuple[int, int]],
        window_px: int,
    ) -> Iterator[WindowScores]:
        """Score windows cut from ``image``.

        Args:
            image: normalised model input ``(bands, rows, cols)`` float32.
            origins_rc: (row, col) of each window's top-left pixel inside ``image``.
            window_px: window edge in pixels.

        Yields:
            Scores for consecutive batches of ``origins_rc``, in order.
        """
        ...


def prepare_net(net: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The network in eval mode on ``device``, channels-last, with weights in ``dtype``.

    bf16 weights rather than autocast: no weight casts on every batch and half the weight
    memory. A network already on that device in that dtype is used as it is (load it so with
    ``load_model(..., dtype=...)``); otherwise a converted copy is, and the caller's is unchanged.
    """
    param = next(net.parameters(), None)
    same_device = (
        param is not None
        and param.device.type == device.type
        and (device.index is None or param.device.index == device.index)
    )  # "cuda" means the current device, where "cuda:0" tensors live
    if param is not None and (param.dtype != dtype or not same_device):
        net = copy.deepcopy(net).to(device, dtype)
    return net.eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def cam_head(net: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear head's weight ``(classes, channels)`` and bias ``(classes,)``, float32.

    Raises:
        ModelFormatError: the network lacks ``forward_features`` or a linear classifier after
            average pooling.
    """
    get_classifier = getattr(net, "get_classifier", None)
    head = get_classifier() if callable(get_classifier) else getattr(net, "fc", None)
    pool = getattr(net, "global_pool", None)
    pool_type = getattr(pool, "pool_type", "avg")
    if (
        not isinstance(head, nn.Linear)
        or not hasattr(net, "forward_features")
        or pool_type != "avg"
    ):
        raise ModelFormatError(
            f"`model` network {type(net).__name__} has no average pool + linear head with "
            "forward_features; CAM needs a timm ResNet-style classifier"
        )
    weight = head.weight.detach().float()
    bias = (
        head.bias.detach().float()
        if head.bias is not None
        else torch.zeros(weight.shape[0], device=weight.device)
    )
    return weight, bias
