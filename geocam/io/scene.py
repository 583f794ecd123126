"""Read a scene: a GeoTIFF or a Sentinel-2 product given as its band files.

Opening checks what would give wrong geometry (no CRS, a rotated or sheared transform, band files
that do not share a footprint) and raises :class:`~geocam.errors.SceneError`; band matching raises
:class:`~geocam.errors.BandError`. Reads are windowed and may reach outside the scene (the
``"torchgeo"`` grid overhangs the edges): the outside is filled and marked invalid. Bands coarser
than the finest one (Sentinel-2 20/60 m) are resampled to the finest grid on read (nearest
neighbour, so the original values are kept).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.io import DatasetReader

from ..config import normalise_band_name
from ..errors import NodataWarning, SceneError
from .sentinel2 import (
    BAND_FILE,
    S2_PRODUCT_ORDER,
    detect_dn_offset,
    metadata_text,
    product_metadata,
    safe_name,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BandSource:
    """Where one scene band lives.

    Attributes:
        path: the file.
        index: 1-based band index in that file.
        name: canonical Sentinel-2 name (``"B04"``) or None when unknown.
        scale: GDAL scale metadata of the band (1.0 when unset).
        offset: GDAL offset metadata of the band (0.0 when unset).
    """

    path: Path
    index: int
    name: str | None
    scale: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True, slots=True)
class Scene:
    """An opened scene's georeferencing and bands (no pixel data).

    Attributes:
        name: a short name for the scene (file stem or product prefix).
        paths: input files.
        crs: coordinate reference system (projected or geographic).
        transform: affine transform of the finest band's grid (north-up, no rotation).
        height: rows of that grid.
        width: columns of that grid.
        bands: every band, in scene order (1-based ``--bands`` indexes count in this order).
        nodata: digital number marking missing pixels, or None (every pixel valid).
        nodata_source: where ``nodata`` came from.
        dn_offset: added to digital numbers before scaling (L2A/L1C baseline >= 04.00: -1000).
        dn_offset_source: where ``dn_offset`` came from.
        dtype: numpy dtype name of the digital numbers.
        tags: the reference file's dataset tags.
        metadata_level: ``PROCESSING_LEVEL`` of the product metadata file, if one was found.
    """

    name: str
    paths: tuple[Path, ...]
    crs: CRS
    transform: Affine
    height: int
    width: int
    bands: tuple[BandSource, ...]
    nodata: float | None
    nodata_source: str
    dn_offset: float
    dn_offset_source: str
    dtype: str
    tags: Mapping[str, str] = field(default_factory=dict)
    metadata_level: str | None = None

    @property
    def shape_rc(self) -> tuple[int, int]:
        """(rows, cols) of the scene grid."""
        return self.height, self.width

    @property
    def res_xy(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units, both positive."""
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        left, bottom, right, top = rasterio.transform.array_bounds(
            self.height, self.width, self.transform
        )
        return left, bottom, right, top

    @property
    def band_names(self) -> tuple[str | None, ...]:
        """Sentinel-2 name of each band, None where unknown."""
        return tuple(b.name for b in self.bands)


def open_raster(path: Path) -> DatasetReader:
    """Open a raster file, or raise a :class:`~geocam.errors.SceneError` that names it."""
    try:
        return rasterio.open(path)
    except (RasterioIOError, RasterioError) as err:
        raise SceneError(
            f"`scene`={str(path)!r} is not a raster GDAL can read ({err}); pass a GeoTIFF or "
            "Sentinel-2 band files"
        ) from err


def _check_georeferencing(path: Path, src: DatasetReader) -> None:
    if src.crs is None:
        raise SceneError(
            f"`scene`={str(path)!r} has no CRS; assign one first (e.g. gdal_edit.py -a_srs "
            "EPSG:32633)"
        )
    t = src.transform
    if t.b != 0.0 or t.d != 0.0:
        raise SceneError(
            f"`scene`={str(path)!r} has a rotated or sheared transform {tuple(t)[:6]}; warp it "
            "north-up first (gdalwarp)"
        )
    if t.a == 0.0 or t.e == 0.0 or t == Affine.identity():
        raise SceneError(
            f"`scene`={str(path)!r} has no usable geotransform {tuple(t)[:6]}; georeference it "
            "first"
        )


def _band_name(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return normalise_band_name(text)
    except ValueError:
        pass
    match = re.search(r"\bB(?:0?[1-9]|1[0-2]|8A)\b", text, re.IGNORECASE)
    return normalise_band_name(match.group(0)) if match else None


def open_scene(
    paths: Sequence[Path],
    name: str | None = None,
    nodata: float | None = None,
    dn_offset: float | None = None,
) -> Scene:
    """Open and validate a scene (no pixels are read).

    Args:
        paths: one raster file (any band count), or Sentinel-2 band files of one product
            (mixed 10/20/60 m resolutions are resampled to the finest grid).
        name: scene name; default from the file names.
        nodata: override of the nodata value (digital number).
        dn_offset: override of the digital-number offset; None: detect it from metadata.

    Raises:
        SceneError: not a raster, no CRS, rotated/sheared transform, or band files that do not
            share a CRS and footprint.
    """
    paths = tuple(Path(p) for p in paths)
    if not paths:
        raise SceneError("`scene` is empty; pass a GeoTIFF or Sentinel-2 band files")
    infos = [_file_info(path) for path in paths]
    ref = min(infos, key=lambda i: i["res"])
    _check_footprints(infos, ref)
    bands = _bands_of(infos)
    is_s2 = sum(b.name is not None for b in bands) >= 3
    nodata_value, nodata_source = _decide_nodata(nodata, ref, is_s2, paths[0])
    meta = product_metadata(paths)
    if dn_offset is not None:
        offset, offset_source = float(dn_offset), "--dn-offset"
    else:
        offset, offset_source = detect_dn_offset(paths, ref["tags"], meta)
    scene = Scene(
        name=name or safe_name(paths[0].stem),
        paths=paths,
        crs=ref["crs"],
        transform=ref["transform"],
        height=ref["shape"][0],
        width=ref["shape"][1],
        bands=tuple(bands),
        nodata=nodata_value,
        nodata_source=nodata_source,
        dn_offset=offset,
        dn_offset_source=offset_source,
        dtype=str(ref["dtype"]),
        tags=dict(ref["tags"]),
        metadata_level=metadata_text(meta, "PROCESSING_LEVEL"),
    )
    log.info(
        "scene %s opened: %d x %d px, %d bands (%s), %s; nodata %s (%s); DN offset %g (%s)",
        scene.name,
        scene.height,
        scene.width,
        len(scene.bands),
        scene.dtype,
        scene.crs.to_string(),
        scene.nodata,
        scene.nodata_source,
        scene.dn_offset,
        scene.dn_offset_source,
    )
    return scene


def _file_info(path: Path) -> dict[str, Any]:
    """What the checks and the scene need of one file, read from its header."""
    if not path.is_file():
        raise SceneError(f"`scene`={str(path)!r} is not a file; pass a GeoTIFF or band files")
    with open_raster(path) as src:
        _check_georeferencing(path, src)
        return {
            "path": path,
            "crs": src.crs,
            "transform": src.transform,
            "shape": (src.height, src.width),
            "count": src.count,
            "descriptions": src.descriptions,
            "nodata": src.nodata,
            "dtype": src.dtypes[0],
            "tags": src.tags(),
            "res": abs(src.transform.a),
            "scales": src.scales,
            "offsets": src.offsets,
        }


def _check_footprints(infos: Sequence[Mapping[str, Any]], ref: Mapping[str, Any]) -> None:
    """Refuse band files that do not share the finest file's CRS and footprint."""
    for info in infos:
        if info["crs"] != ref["crs"]:
            raise SceneError(
                f"`scene` band file {str(info['path'])!r} has CRS {info['crs']} but "
                f"{str(ref['path'])!r} has {ref['crs']}; give band files of one product"
            )
        bounds = rasterio.transform.array_bounds(*info["shape"], info["transform"])
        ref_bounds = rasterio.transform.array_bounds(*ref["shape"], ref["transform"])
        if max(abs(a - b) for a, b in zip(bounds, ref_bounds, strict=True)) > info["res"]:
            raise SceneError(
                f"`scene` band file {str(info['path'])!r} covers {bounds} but "
                f"{str(ref['path'])!r} covers {ref_bounds}; give band files of one product"
            )


def _bands_of(infos: Sequence[Mapping[str, Any]]) -> list[BandSource]:
    """Every band of the files; of several band files, the finest per name in product order."""
    bands: list[BandSource] = []
    for info in infos:
        file_match = BAND_FILE.match(info["path"].name)
        for i in range(info["count"]):
            band = _band_name(info["descriptions"][i])
            if band is None and info["count"] == 1 and file_match:
                band = normalise_band_name(file_match.group("band"))
            scale = float(info["scales"][i]) if info["scales"][i] is not None else 1.0
            offset = float(info["offsets"][i]) if info["offsets"][i] is not None else 0.0
            bands.append(BandSource(info["path"], i + 1, band, scale, offset))
    if len(infos) > 1:
        bands = _finest_per_name(bands, {i["path"]: i["res"] for i in infos})
        rank = {n: k for k, n in enumerate(S2_PRODUCT_ORDER)}
        bands.sort(key=lambda b: (rank.get(b.name or "", 99), str(b.path)))
    return bands


def _decide_nodata(
    nodata: float | None, ref: Mapping[str, Any], is_s2: bool, path: Path
) -> tuple[float | None, str]:
    """The nodata value and where it came from: the override, the file, Sentinel-2's 0, none."""
    if nodata is not None:
        nodata_value, nodata_source = float(nodata), "--nodata"
    elif ref["nodata"] is not None:
        nodata_value, nodata_source = float(ref["nodata"]), "scene nodata value"
    elif is_s2:
        nodata_value, nodata_source = 0.0, "Sentinel-2 convention (NODATA = 0)"
    elif np.dtype(ref["dtype"]).kind == "f":
        nodata_value, nodata_source = None, "none: NaN and infinite values are nodata"
        warnings.warn(
            f"`scene`={str(path)!r} has no nodata value; NaN and infinite pixels are nodata, "
            "every other pixel is valid (pass --nodata to set one)",
            NodataWarning,
            stacklevel=3,
        )
    else:
        nodata_value, nodata_source = None, "none: every pixel is valid"
        warnings.warn(
            f"`scene`={str(path)!r} has no nodata value; every pixel is treated as valid "
            "(pass --nodata to set one)",
            NodataWarning,
            stacklevel=3,
        )
    return nodata_value, nodata_source


def _finest_per_name(bands: list[BandSource], res: dict[Path, float]) -> list[BandSource]:
    best: dict[str, BandSource] = {}
    unnamed = []
    for band in bands:
        if band.name is None:
            unnamed.append(band)
        elif band.name not in best or res[band.path] < res[best[band.name].path]:
            best[band.name] = band
    return [*best.values(), *unnamed]
