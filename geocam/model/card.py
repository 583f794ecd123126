"""What a scene run needs to know about a model (:class:`ModelCard`), and a loaded model."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from ..errors import ModelFormatError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rendering:
    """How Sentinel-2 digital numbers become model input values.

    ``value = clip(dn * scale + offset, clip_min, clip_max)``, per band, where ``dn`` is L1C
    top-of-atmosphere reflectance x 10000 (L2A bottom-of-atmosphere after removing its offset).
    The EuroSAT RGB JPEGs are ``clip(dn / 2750 * 255, 0, 255)`` (DESIGN.md).
    """

    scale: float
    offset: float
    clip_min: float
    clip_max: float
    dn_units: str = "reflectance x 10000"


@dataclass(frozen=True, slots=True)
class ModelCard:
    """Everything a scene run needs to know about a model, stored in its file.

    Attributes:
        architecture: timm model name, e.g. ``"resnet50"``.
        classes: class names in logit order.
        bands: Sentinel-2 band names in input-channel order, e.g. ``("B04", "B03", "B02")``.
        rendering: digital numbers to rendered values (see :class:`Rendering`).
        mean: per-band mean subtracted after rendering, in rendered units.
        std: per-band standard deviation divided after rendering, in rendered units.
        window_px: training patch edge in pixels (EuroSAT: 64).
        gsd_m: ground sampling distance of the training patches in metres (EuroSAT: 10).
        input_scale: factor by which a scene window is resized before the model (1.0: as is).
        training: how the model was trained (data, split, epochs, seed, command, wall time).
        metrics: measured test metrics (overall accuracy, per-class F1).
        geocam_version: version of geocam that wrote the file.
    """

    architecture: str
    classes: tuple[str, ...]
    bands: tuple[str, ...]
    rendering: Rendering
    mean: tuple[float, ...]
    std: tuple[float, ...]
    window_px: int = 64
    gsd_m: float = 10.0
    input_scale: float = 1.0
    training: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    geocam_version: str = ""

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.bands) or len(self.std) != len(self.bands):
            raise ModelFormatError(
                f"`mean` ({len(self.mean)}) and `std` ({len(self.std)}) need one value per band "
                f"of `bands` ({len(self.bands)}); give one per input channel"
            )
        if not self.classes:
            raise ModelFormatError("`classes` is empty; a model needs at least one class name")

    def to_json(self) -> str:
        """Serialise to the JSON string stored in the file header."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> ModelCard:
        """Parse and validate the JSON stored in a file header.

        Args:
            text: JSON object with the :class:`ModelCard` fields.
            source: what the text came from, for error messages.

        Raises:
            ModelFormatError: the JSON is malformed or a required field is missing.
        """
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ModelFormatError(f"{source}: geocam metadata is not valid JSON ({err})") from err
        required = ("architecture", "classes", "bands", "rendering", "mean", "std")
        missing = [k for k in required if k not in raw]
        if missing:
            raise ModelFormatError(
                f"{source}: geocam metadata lacks {', '.join(missing)}; re-export the model "
                "with `geocam train` or geocam.model.save_model"
            )
        try:
            rendering = Rendering(**raw["rendering"])
        except TypeError as err:
            raise ModelFormatError(f"{source}: bad `rendering` in metadata ({err})") from err
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in raw.items() if k in known}
        kwargs.update(
            rendering=rendering,
            classes=tuple(raw["classes"]),
            bands=tuple(raw["bands"]),
            mean=tuple(float(v) for v in raw["mean"]),
            std=tuple(float(v) for v in raw["std"]),
        )
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class GeocamModel:
    """A loaded model: network (eval mode), card, file SHA-256, seconds the load took."""

    net: nn.Module
    card: ModelCard
    sha256: str
    load_s: float = 0.0
