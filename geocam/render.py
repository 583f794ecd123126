"""Digital numbers to model input and to true colour, following a model card (pure)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from .model import ModelCard
from .radiometry import Radiometry

log = logging.getLogger(__name__)


def render(
    dn: npt.NDArray[np.float32],
    valid: npt.NDArray[np.bool_],
    card: ModelCard,
    radiometry: Radiometry,
    positions: Sequence[int],
) -> npt.NDArray[np.float32]:
    """Digital numbers to normalised model input, following the model card (pure).

    ``dn10k = dn * gain + add`` (the scene's :class:`~geocam.radiometry.Radiometry`);
    ``rendered = clip(dn10k * scale + offset, clip_min, clip_max)``;
    ``input = (rendered - mean) / std``; invalid pixels are set to 0 (the training mean).

    Args:
        dn: digital numbers ``(bands, rows, cols)`` in the model's channel order; changed in
            place.
        valid: ``(rows, cols)`` mask of valid pixels.
        card: the model card (rendering, mean, std).
        radiometry: how the scene's digital numbers become reflectance x 10000.
        positions: the scene band (0-based) of each of ``dn``'s bands.

    Returns:
        ``(bands, rows, cols)`` float32.
    """
    r = card.rendering
    out = radiometry.to_dn10k(dn, positions)
    out *= np.float32(r.scale)
    out += np.float32(r.offset)
    np.clip(out, r.clip_min, r.clip_max, out=out)
    mean = np.asarray(card.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(card.std, dtype=np.float32)[:, None, None]
    out -= mean
    out /= std
    out[:, ~valid] = 0.0
    return out.astype(np.float32, copy=False)


def true_colour(
    dn: npt.NDArray[np.float32],
    valid: npt.NDArray[np.bool_],
    radiometry: Radiometry,
    positions: Sequence[int],
) -> npt.NDArray[np.uint8]:
    """EuroSAT-style true colour (``clip(dn10k / 2750 * 255)``) of red, green, blue bands (pure).

    Args:
        dn: ``(3, rows, cols)`` digital numbers of B04, B03, B02 (or any three bands); changed
            in place.
        valid: ``(rows, cols)`` valid mask; invalid pixels are black.
        radiometry: how the scene's digital numbers become reflectance x 10000.
        positions: the scene band (0-based) of each of ``dn``'s bands.

    Returns:
        ``(rows, cols, 3)`` uint8.
    """
    scaled = radiometry.to_dn10k(dn, positions)
    scaled *= np.float32(255.0 / 2750.0)
    rgb = np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)
    rgb[:, ~valid] = 0
    return np.moveaxis(rgb, 0, -1)
