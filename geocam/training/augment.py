"""Radiometric augmentation in the digital-number domain, for models that read L1C and L2A alike.

EuroSAT was rendered from Sentinel-2 L1C (top of atmosphere). Scenes people run differ from it
mostly by per-band additive terms (path radiance: present in L1C, removed in L2A surface
reflectance, larger with haze), per-band gains (illumination, sun angle, the stretch of an
8-bit rendering) and a tone curve. :func:`radiometric_jitter` draws those per image on a
training batch: it undoes the rendering to digital numbers, applies
``dn' = 2750 * ((dn * gain + haze * path) / 2750) ** gamma`` per band, and renders again, so the
network sees the scenes of every processing level and season it will meet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..model import Rendering
from ..radiometry import PATH_RADIANCE_DN

#: Digital number that the EuroSAT RGB rendering maps to 255; the tone curve's fixed point.
_TONE_PIVOT_DN = 2750.0


@dataclass(frozen=True, slots=True)
class RadiometricJitter:
    """Ranges of the per-image radiometric perturbation.

    Attributes:
        probability: share of images perturbed (the rest are left as rendered).
        haze: range of the path-radiance multiple added (negative: L2A-like, radiance removed;
            positive: hazier than the training scenes).
        log_gain: range of the natural log of the gain common to all bands.
        band_jitter: standard deviation (relative) of each band's gain and path radiance
            around the common draw.
        log_gamma: range of the natural log of the tone-curve exponent.
    """

    probability: float = 0.8
    haze: tuple[float, float] = (-1.6, 2.0)
    log_gain: tuple[float, float] = (-0.35, 0.35)
    band_jitter: float = 0.2
    log_gamma: tuple[float, float] = (-0.25, 0.25)


def _uniform(n: int, bounds: tuple[float, float], g: torch.Generator | None) -> Tensor:
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(n, generator=g)


def radiometric_jitter(
    images: Tensor,
    bands: Sequence[str],
    rendering: Rendering,
    jitter: RadiometricJitter,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Perturb rendered images as other processing levels, hazes and illuminations would.

    Args:
        images: (batch, bands, rows, cols) rendered values (``clip(dn * scale + offset)``).
        bands: Sentinel-2 band name of each channel (for its path radiance).
        rendering: how the images were rendered from digital numbers.
        jitter: the ranges to draw from.
        generator: optional CPU random generator (the draws are made on the CPU).

    Returns:
        A new tensor of rendered values, same shape and device.
    """
    n, c = images.shape[0], images.shape[1]
    if c != len(bands):
        raise ValueError(f"`images` has {c} channels but `bands` names {len(bands)}")
    path = torch.tensor([PATH_RADIANCE_DN.get(b, 0.0) for b in bands])
    haze = _uniform(n, jitter.haze, generator)[:, None]
    gain = _uniform(n, jitter.log_gain, generator)[:, None]
    gamma = _uniform(n, jitter.log_gamma, generator).exp()[:, None, None, None]
    per_band = jitter.band_jitter * torch.randn(n, c, 2, generator=generator)
    gain_nb = (gain + per_band[..., 0]).exp()
    add_nb = haze * path * (1.0 + per_band[..., 1])
    keep = torch.rand(n, generator=generator) >= jitter.probability
    gain_nb[keep] = 1.0
    add_nb[keep] = 0.0
    gamma[keep] = 1.0
    dev = images.device
    dn = (images.float() - rendering.offset) / rendering.scale
    dn = dn * gain_nb.to(dev)[:, :, None, None] + add_nb.to(dev)[:, :, None, None]
    dn = _TONE_PIVOT_DN * (dn.clamp_min(0.0) / _TONE_PIVOT_DN).pow(gamma.to(dev))
    out = (dn * rendering.scale + rendering.offset).clamp(rendering.clip_min, rendering.clip_max)
    return out.to(images.dtype)


__all__ = ["RadiometricJitter", "radiometric_jitter"]
