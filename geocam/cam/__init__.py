"""Score windows: softmax probabilities and Class Activation Maps of every class, no gradients.

:mod:`~geocam.cam.base` holds the :class:`Engine` protocol the pipeline talks to;
:mod:`~geocam.cam.exact` and :mod:`~geocam.cam.dense` are its two engines. This module builds
them (:func:`make_engine`) and decides whether a window grid can run in a mode
(:func:`check_grid`), before any output exists.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..config import Grid, Precision
from ..errors import ConfigError
from ..runtime import compute_dtype, cpu_supports_bf16, resolve_precision, torch_device
from .base import Engine, WindowScores, cam_head, prepare_net
from .dense import FEATURE_STRIDE_PX, DenseEngine
from .exact import ExactEngine

__all__ = (
    "DenseEngine",
    "Engine",
    "ExactEngine",
    "WindowScores",
    "cam_head",
    "check_grid",
    "compute_dtype",
    "cpu_supports_bf16",
    "make_engine",
    "prepare_net",
    "resolve_precision",
    "torch_device",
)

log = logging.getLogger(__name__)

MODES = ("exact", "dense")


def _check_mode(mode: str, input_scale: float) -> None:
    if mode not in MODES:
        raise ConfigError(f"`mode`={mode!r} is not one of {', '.join(MODES)}")
    if mode == "dense" and input_scale != 1.0:
        raise ConfigError(
            f"the model's `input_scale`={input_scale} resizes each window; dense mode pools "
            "one feature map at the scene's scale - use --mode exact"
        )


def check_grid(mode: str, grid: Grid, window_px: int, stride_px: int, input_scale: float) -> None:
    """Refuse a window grid that an engine cannot run (the one place that decides it).

    Args:
        mode: ``"exact"`` or ``"dense"``.
        grid: the window layout (``"torchgeo"`` or ``"inward"``).
        window_px: window edge in pixels.
        stride_px: window step in pixels.
        input_scale: the model's resize factor of windows.

    Raises:
        ConfigError: an unknown mode, or a dense run off the 32 px feature lattice (window,
            stride or origins) or with resized windows.
    """
    _check_mode(mode, input_scale)
    if mode != "dense":
        return
    DenseEngine.check_grid(window_px, stride_px)
    if grid != "torchgeo":
        raise ConfigError(
            f"`grid`={grid!r}: dense mode needs every window on one {FEATURE_STRIDE_PX} px "
            "lattice; use --grid torchgeo or --mode exact"
        )


def make_engine(
    mode: str,
    net: nn.Module,
    batch_size: int,
    device: str | torch.device,
    precision: Precision,
    input_scale: float,
) -> Engine:
    """Build the engine for a mode.

    Args:
        mode: ``"exact"`` (each window alone) or ``"dense"`` (one backbone pass per block,
            see :mod:`geocam.cam.dense`).
        net: the classifier.
        batch_size: windows per forward pass.
        device: torch device.
        precision: ``"auto"``, ``"bf16"`` or ``"fp32"``.
        input_scale: resize factor of windows before the network.

    Raises:
        ConfigError: an unknown or unavailable mode, or a device torch cannot use.
    """
    dev = torch_device(device)
    _check_mode(mode, input_scale)
    engine: Engine
    if mode == "dense":
        engine = DenseEngine(net, dev, precision, batch_size=max(batch_size, 256))
    else:
        engine = ExactEngine(net, batch_size, dev, precision, input_scale)
    log.info("%s engine on %s in %s", engine.name, engine.device, engine.precision)
    return engine
