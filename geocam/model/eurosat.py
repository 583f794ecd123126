"""EuroSAT: its classes, band order, renderings and normalisation statistics."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .card import Rendering

log = logging.getLogger(__name__)


#: EuroSAT class names in label order (alphabetical, as torchgeo's ``EuroSAT`` and the RGB split).
EUROSAT_CLASSES: tuple[str, ...] = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)


#: EuroSAT MS band order (B8A last), which torchgeo's ``EuroSAT`` uses too.
EUROSAT_MS_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07",
    "B08", "B09", "B10", "B11", "B12", "B8A",
)  # fmt: skip


RGB_BANDS: tuple[str, ...] = ("B04", "B03", "B02")


EUROSAT_RGB_RENDERING = Rendering(scale=255.0 / 2750.0, offset=0.0, clip_min=0.0, clip_max=255.0)


EUROSAT_MS_RENDERING = Rendering(scale=1.0, offset=0.0, clip_min=0.0, clip_max=65535.0)


def normalisation_for(
    bands: Sequence[str], rgb8: bool
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band (mean, std) in rendered units for EuroSAT inputs.

    Args:
        bands: Sentinel-2 band names in channel order.
        rgb8: True for the 0-255 RGB rendering (ImageNet-like statistics of EuroSAT RGB),
            False for raw digital numbers (torchgeo's EuroSAT statistics).
    """
    if rgb8:
        # Measured on every 5th image of the kaggle-apollo2506 train split (3,780 JPEGs).
        rgb_mean = {"B04": 88.97, "B03": 97.71, "B02": 104.48}
        rgb_std = {"B04": 52.15, "B03": 35.11, "B02": 29.47}
        return tuple(rgb_mean[b] for b in bands), tuple(rgb_std[b] for b in bands)
    from torchgeo.datamodules.eurosat import MEAN, STD

    return tuple(float(MEAN[b]) for b in bands), tuple(float(STD[b]) for b in bands)
