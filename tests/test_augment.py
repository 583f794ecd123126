"""Radiometric jitter: draws stay in range, follow the path-radiance spectrum, keep some images."""

from __future__ import annotations

import torch

from geocam.model import EUROSAT_RGB_RENDERING, RGB_BANDS
from geocam.training.augment import RadiometricJitter, radiometric_jitter


def batch(n: int = 64, value: float = 100.0) -> torch.Tensor:
    return torch.full((n, 3, 8, 8), value)


def test_probability_zero_is_identity_and_one_changes_every_image() -> None:
    images = batch()
    off = radiometric_jitter(images, RGB_BANDS, EUROSAT_RGB_RENDERING, RadiometricJitter(0.0))
    assert torch.equal(off, images)
    g = torch.Generator().manual_seed(0)
    on = radiometric_jitter(images, RGB_BANDS, EUROSAT_RGB_RENDERING, RadiometricJitter(1.0), g)
    assert (on != images).flatten(1).any(dim=1).all()
    assert on.min() >= 0 and on.max() <= 255


def test_path_radiance_removal_darkens_blue_most() -> None:
    # haze fixed at -1 (L2A-like), no gain, no tone curve, no per-band spread
    jitter = RadiometricJitter(1.0, haze=(-1.0, -1.0), log_gain=(0, 0), band_jitter=0.0,
                               log_gamma=(0, 0))  # fmt: skip
    out = radiometric_jitter(batch(value=150.0), RGB_BANDS, EUROSAT_RGB_RENDERING, jitter)
    drop_dn = (150.0 - out[0, :, 0, 0]) / EUROSAT_RGB_RENDERING.scale
    torch.testing.assert_close(drop_dn, torch.tensor([250.0, 350.0, 600.0]), rtol=1e-4, atol=0.1)


def test_seeded_draws_repeat() -> None:
    images = torch.rand(16, 3, 8, 8) * 255
    jitter = RadiometricJitter(0.8)
    a = radiometric_jitter(images, RGB_BANDS, EUROSAT_RGB_RENDERING, jitter,
                           torch.Generator().manual_seed(3))  # fmt: skip
    b = radiometric_jitter(images, RGB_BANDS, EUROSAT_RGB_RENDERING, jitter,
                           torch.Generator().manual_seed(3))  # fmt: skip
    assert torch.equal(a, b)
