"""What a scene's digital numbers mean, and the ground size of its pixels (pure decisions).

A model's card says how L1C reflectance x 10000 (``dn10k``) becomes its input. Scenes come as
Sentinel-2 L1C or L2A, at x10000, x1000 or as 0-1 floats, with GDAL scale/offset metadata, the
L2A ``BOA_ADD_OFFSET``, or as 8-bit true-colour renderings, and at other ground resolutions.
This module decides, from what :mod:`geocam.io.scene` found in the files and from a sample of the
pixels, the linear map ``dn10k = dn * gain + add`` per band (:class:`Radiometry`), refuses
values that cannot be reflectance at the declared scale, and plans the window size that shows
the model its own ground resolution (:class:`GroundScale`). Everything here is recorded in
run.json.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj import Geod, Transformer
from rasterio.crs import CRS

from .errors import RadiometryError, SceneError

#: EuroSAT's true-colour stretch: an 8-bit value v stands for reflectance x 10000 of v * this.
RGB8_DN_PER_LEVEL = 2750.0 / 255.0

#: Processing level named in a file or folder name (``S2A_MSIL2A_...``, ``..._s2l2a_...``).
_LEVEL_IN_NAME = re.compile(
    r"(?:^|[^a-z0-9])(?:s2[abcd]?_?)?(?:msi)?(l1c|l2a)(?:$|[^a-z0-9])", re.IGNORECASE
)

#: Typical Sentinel-2 path radiance per band in reflectance x 10000: what L2A correction removes
#: from a clear mid-latitude L1C scene (falls with wavelength: Rayleigh and aerosol scattering).
PATH_RADIANCE_DN: dict[str, float] = {
    "B01": 900.0,
    "B02": 600.0,
    "B03": 350.0,
    "B04": 250.0,
    "B05": 200.0,
    "B06": 150.0,
    "B07": 130.0,
    "B08": 120.0,
    "B8A": 110.0,
    "B09": 60.0,
    "B10": 20.0,
    "B11": 30.0,
    "B12": 20.0,
}

#: Darkest 90th percentile (brightest model band, dn10k) of a real scene: clear open water in
#: surface reflectance is about this dark; land, haze and any L1C scene are brighter.
MIN_P90_DN10K = 300.0
#: Brightest plausible median (darkest model band, dn10k): reflectance 1.0.
MAX_P50_DN10K = 10000.0
#: Darkest plausible median (brightest model band, dn10k): a wrong offset pushes it below 0.
MIN_P50_DN10K = -300.0
#: Every model band's 1st percentile above this in an L2A scene means the +1000 offset is
#: still in the numbers (surface reflectance of water, shadow and vegetation is far lower).
L2A_OFFSET_P1_DN10K = 900.0

#: Ground-size ratios (scene / model) run as they are; within the wider range windows are
#: resized to the model's ground resolution; outside it the scene is refused.
AS_IS_RATIO = 1.1
MIN_RATIO, MAX_RATIO = 0.25, 2.2
#: Scene windows are a multiple of this (half-cell lattice of whole pixels) and at least
#: :data:`MIN_WINDOW_PX`.
WINDOW_STEP_PX = 8
MIN_WINDOW_PX = 32


@dataclass(frozen=True, slots=True)
class Radiometry:
    """How a scene's digital numbers become L1C-like reflectance x 10000, per scene band.

    ``dn10k = dn * gain + add``.

    Attributes:
        kind: ``"reflectance"`` or ``"rgb8"`` (an 8-bit true-colour rendering).
        level: ``"L1C"``, ``"L2A"`` or ``"unknown"``.
        level_source: where the level came from.
        gain: per scene band, in scene band order.
        add: per scene band, in scene band order.
        scale_source: where ``gain`` and ``add`` came from.
        sample_percentiles: p1, p50, p90 and p99 of the sampled valid pixels in ``dn10k`` of
            the model's bands (model band order): what the plausibility check saw.
    """

    kind: str
    level: str
    level_source: str
    gain: tuple[float, ...]
    add: tuple[float, ...]
    scale_source: str
    sample_percentiles: Mapping[str, tuple[float, ...]]

    def to_dn10k(
        self, dn: npt.NDArray[np.float32], positions: Sequence[int]
    ) -> npt.NDArray[np.float32]:
        """Apply the map in place.

        Args:
            dn: ``(bands, ...)`` float32 digital numbers.
            positions: the scene band (0-based) of each of ``dn``'s bands.
        """
        shape = (len(positions),) + (1,) * (dn.ndim - 1)
        dn *= np.asarray([self.gain[i] for i in positions], dtype=np.float32).reshape(shape)
        dn += np.asarray([self.add[i] for i in positions], dtype=np.float32).reshape(shape)
        return dn


@dataclass(frozen=True, slots=True)
class GroundScale:
    """The scene's ground sample distance against the model's, and the window that matches.

    Attributes:
        gsd_m: ground size of a scene pixel in metres (geometric mean of x and y, scene centre).
        gsd_xy_m: (x, y) ground size of a scene pixel in metres.
        model_gsd_m: the model's training resolution.
        window_px: default window edge in scene pixels (the model's window on the ground).
        input_scale: resize factor from a scene window to the network input.
        how: ``"as is"`` or ``"resampled"``.
    """

    gsd_m: float
    gsd_xy_m: tuple[float, float]
    model_gsd_m: float
    window_px: int
    input_scale: float
    how: str


def level_from_text(texts: Sequence[str]) -> str | None:
    """``"L1C"`` or ``"L2A"`` when a file or folder name or a tag value names one, else None."""
    for text in texts:
        for match in _LEVEL_IN_NAME.finditer(text):
            return match.group(1).upper()
    return None


def detect_level(
    declared: str | None,
    metadata_level: str | None,
    names: Sequence[str],
    tags: Mapping[str, str],
    dn_offset_source: str,
) -> tuple[str, str]:
    """The scene's processing level and where it came from.

    Args:
        declared: ``--level`` (``"L1C"``/``"L2A"``) or None.
        metadata_level: ``PROCESSING_LEVEL`` of the product's ``MTD_*.xml``, if one was found.
        names: the scene's file paths (folder names count: ``S2B_MSIL2A_.../GRANULE/...``).
        tags: the reference file's dataset tags.
        dn_offset_source: where the digital-number offset came from (``BOA_ADD_OFFSET`` is L2A).
    """
    if declared:
        return declared.upper(), "--level"
    if metadata_level:
        level = level_from_text([metadata_level.replace("Level-", "L")])
        if level:
            return level, f"product metadata PROCESSING_LEVEL={metadata_level}"
    for key, value in tags.items():
        if "LEVEL" in key.upper():
            level = level_from_text([value, value.replace("Level-", "L")])
            if level:
                return level, f"tag {key}={value}"
    if "BOA_ADD_OFFSET" in dn_offset_source:
        return "L2A", f"BOA_ADD_OFFSET ({dn_offset_source})"
    if "RADIO_ADD_OFFSET" in dn_offset_source:
        return "L1C", f"RADIO_ADD_OFFSET ({dn_offset_source})"
    level = level_from_text(names)
    if level:
        return level, "file name"
    return "unknown", "no processing level in metadata, tags or names (pass --level)"


def decide_radiometry(
    *,
    dtype: str,
    positions: Sequence[int],
    gdal_scales: Sequence[float],
    gdal_offsets: Sequence[float],
    declared_scale: float | None,
    dn_offset: float,
    dn_offset_source: str,
    dn_offset_declared: bool,
    level: tuple[str, str],
    sample_dn: npt.NDArray[np.float32],
    band_names: Sequence[str | None],
    l2a_path_radiance: bool,
    check: bool = True,
) -> Radiometry:
    """Decide the digital-number map of a scene and check that it gives reflectance.

    Args:
        dtype: numpy dtype name of the scene's digital numbers.
        positions: the scene band (0-based) feeding each model band.
        gdal_scales: GDAL scale of each scene band (1.0 when unset).
        gdal_offsets: GDAL offset of each scene band (0.0 when unset).
        declared_scale: ``--reflectance-scale`` (digital number = reflectance x this) or None.
        dn_offset: offset added to digital numbers before scaling (``BOA_ADD_OFFSET``).
        dn_offset_source: where ``dn_offset`` came from.
        dn_offset_declared: ``dn_offset`` was given by the user (``--dn-offset``).
        level: (processing level, its source), see :func:`detect_level`.
        sample_dn: ``(bands, n)`` valid digital numbers sampled from the scene, model band order.
        band_names: Sentinel-2 name of each scene band (None where unknown).
        l2a_path_radiance: add :data:`PATH_RADIANCE_DN` to L2A scenes (after the checks), so
            that surface reflectance looks like the L1C top-of-atmosphere data the model saw.
        check: refuse implausible values (``--no-radiometry-check`` turns it off).

    An L2A scene without offset metadata whose every band is brighter than surface
    reflectance can be at its 1st percentile gets the -1000 offset (recorded in
    ``scale_source``).

    Raises:
        RadiometryError: the values cannot be reflectance at the scale decided.
    """
    n = len(gdal_scales)
    finite = sample_dn[:, np.isfinite(sample_dn).all(axis=0)] if sample_dn.size else sample_dn
    has_gdal = any(gdal_scales[i] != 1.0 or gdal_offsets[i] != 0.0 for i in positions)
    kind = "reflectance"
    if declared_scale is not None:
        gain = [10000.0 / declared_scale] * n
        add = [dn_offset * g for g in gain]
        source = (
            f"--reflectance-scale {declared_scale:g}, offset {dn_offset:g} ({dn_offset_source})"
        )
    elif dtype == "uint8":
        kind = "rgb8"
        gain, add = [RGB8_DN_PER_LEVEL] * n, [0.0] * n
        source = "8-bit true-colour rendering: value v is reflectance x 10000 of v * 2750 / 255"
    elif has_gdal:
        gain = [10000.0 * s for s in gdal_scales]
        add = [10000.0 * o for o in gdal_offsets]
        source = "GDAL scale/offset metadata (reflectance = dn * scale + offset)"
    elif dtype.startswith("float") and finite.size and float(np.percentile(finite, 99)) <= 2.0:
        gain, add = [10000.0] * n, [0.0] * n
        source = "float reflectance 0-1 (99th percentile <= 2)"
    else:
        gain = [1.0] * n
        add = [dn_offset] * n
        source = f"reflectance x 10000, offset {dn_offset:g} ({dn_offset_source})"
    dn10k = _to_dn10k(finite, gain, add, positions)
    if (
        level[0] == "L2A"
        and source.startswith("reflectance x 10000")
        and not dn_offset_declared
        and dn_offset == 0.0
        and dn10k.size
        and float(np.percentile(dn10k, 1, axis=1).min()) > L2A_OFFSET_P1_DN10K
    ):
        # Baseline >= 04.00 numbers whose BOA_ADD_OFFSET metadata was lost on the way.
        add = [-1000.0] * n
        source = (
            f"reflectance x 10000, offset -1000: an L2A scene ({level[1]}) without offset "
            f"metadata whose every band has its 1st percentile above {L2A_OFFSET_P1_DN10K:g} "
            "still carries BOA_ADD_OFFSET (pass --dn-offset 0 to keep the numbers)"
        )
        dn10k = _to_dn10k(finite, gain, add, positions)
    radiometry = Radiometry(kind, *level, tuple(gain), tuple(add), source, _percentiles(dn10k))
    if check and dn10k.size:
        _check_plausible(radiometry)
    if l2a_path_radiance and level[0] == "L2A" and kind == "reflectance":
        path = [PATH_RADIANCE_DN.get(name or "", 0.0) for name in band_names]
        radiometry = replace(
            radiometry,
            add=tuple(a + p for a, p in zip(add, path, strict=True)),
            scale_source=f"{source}; L2A + typical path radiance (L1C-like)",
        )
    return radiometry


def _to_dn10k(
    dn: npt.NDArray[np.float32], gain: Sequence[float], add: Sequence[float], at: Sequence[int]
) -> npt.NDArray[np.float32]:
    g = np.asarray([gain[i] for i in at], dtype=np.float32)[:, None]
    a = np.asarray([add[i] for i in at], dtype=np.float32)[:, None]
    return (dn * g + a).astype(np.float32)


def _percentiles(dn10k: npt.NDArray[np.float32]) -> dict[str, tuple[float, ...]]:
    if not dn10k.size:
        return {}
    qs = np.percentile(dn10k, [1, 50, 90, 99], axis=1)
    return {
        f"p{q}": tuple(round(float(v), 1) for v in row)
        for q, row in zip((1, 50, 90, 99), qs, strict=True)
    }


def _check_plausible(r: Radiometry) -> None:
    p = r.sample_percentiles
    how = (
        "--reflectance-scale: 10000 for Sentinel-2 L1C/L2A, 1 for 0-1 floats; --dn-offset for "
        "an offset; --no-radiometry-check runs it anyway"
    )
    seen = f"scene values read under {r.scale_source} as reflectance"
    if max(p["p50"]) < MIN_P50_DN10K:
        raise RadiometryError(
            f"{seen} {max(p['p50']) / 10000:.3f} at their median: negative, so the offset is "
            f"wrong; pass the scene's scale and offset ({how})"
        )
    if max(p["p90"]) < MIN_P90_DN10K:
        suggest = 10000.0 / max(r.gain) / 10.0
        raise RadiometryError(
            f"{seen} {max(p['p90']) / 10000:.4f} at their 90th percentile: darker than any land "
            f"or water scene; if the digital numbers are reflectance x {suggest:g}, pass "
            f"--reflectance-scale {suggest:g} ({how})"
        )
    if min(p["p50"]) > MAX_P50_DN10K:
        raise RadiometryError(
            f"{seen} {min(p['p50']) / 10000:.2f} at their median: brighter than any surface; "
            f"pass the scene's scale ({how})"
        )


def ground_sample_m(crs: CRS, transform: Affine, shape_rc: tuple[int, int]) -> tuple[float, float]:
    """Ground size (x, y) in metres of the scene's centre pixel, on the WGS84 ellipsoid.

    Works for any CRS GDAL knows: UTM, national grids, Web Mercator (whose units are not ground
    metres away from the equator) and geographic degrees.
    """
    rows, cols = shape_rc
    c, r = cols / 2.0, rows / 2.0
    corners = [transform @ (x, y) for x, y in ((c, r), (c + 1, r), (c, r + 1))]
    try:
        to_lonlat = Transformer.from_crs(
            ProjCRS.from_user_input(crs.to_wkt()), 4326, always_xy=True
        )
    except Exception as err:  # pyproj raises its own CRSError family
        raise SceneError(f"scene CRS {crs} cannot be related to the ground ({err})") from err
    (lon0, lat0), (lon1, lat1), (lon2, lat2) = (to_lonlat.transform(x, y) for x, y in corners)
    geod = Geod(ellps="WGS84")
    dx = geod.inv(lon0, lat0, lon1, lat1)[2]
    dy = geod.inv(lon0, lat0, lon2, lat2)[2]
    if not (math.isfinite(dx) and math.isfinite(dy)) or dx <= 0 or dy <= 0:
        raise SceneError(f"scene pixel size {transform.a} x {transform.e} has no ground size")
    return float(dx), float(dy)


def plan_ground_scale(
    gsd_xy_m: tuple[float, float], model_gsd_m: float, model_window_px: int, model_scale: float
) -> GroundScale:
    """The default window that covers the model's training window on the ground.

    Args:
        gsd_xy_m: (x, y) ground size of a scene pixel in metres.
        model_gsd_m: the model's training resolution in metres.
        model_window_px: the model's training window edge in pixels.
        model_scale: the model's own ``input_scale``.

    Raises:
        RadiometryError: the scene is too coarse or too fine for the model.
    """
    gsd = math.sqrt(gsd_xy_m[0] * gsd_xy_m[1])
    ratio = gsd / model_gsd_m
    if 1 / AS_IS_RATIO <= ratio <= AS_IS_RATIO:
        return GroundScale(gsd, gsd_xy_m, model_gsd_m, model_window_px, model_scale, "as is")
    if not MIN_RATIO <= ratio <= MAX_RATIO:
        raise RadiometryError(
            f"scene pixels are {gsd:.1f} m on the ground and the model was trained at "
            f"{model_gsd_m:g} m ({ratio:.2f}x); geocam resamples between "
            f"{model_gsd_m * MIN_RATIO:g} and {model_gsd_m * MAX_RATIO:g} m only: use imagery "
            f"near {model_gsd_m:g} m (Sentinel-2 10 m bands), or resample it first "
            f"(gdalwarp -tr ...)"
        )
    steps = max(MIN_WINDOW_PX // WINDOW_STEP_PX, round(model_window_px / ratio / WINDOW_STEP_PX))
    window_px = steps * WINDOW_STEP_PX
    scale = model_window_px * model_scale / window_px
    return GroundScale(gsd, gsd_xy_m, model_gsd_m, window_px, scale, "resampled")


__all__ = [
    "GroundScale",
    "Radiometry",
    "decide_radiometry",
    "detect_level",
    "ground_sample_m",
    "level_from_text",
    "plan_ground_scale",
]
