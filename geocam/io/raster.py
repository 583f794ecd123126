"""Write (and re-read) georeferenced rasters: tiled work GeoTIFFs written block by block, then COGs.

Creation options come from the named :data:`PROFILES` (rio-cogeo style, STYLE C14). A run writes
each finished block into a tiled work GeoTIFF (so memory never holds the scene), then
:func:`write_cog` copies it with GDAL's COG driver, which adds overviews.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from xml.sax.saxutils import escape

import numpy as np
import numpy.typing as npt
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.io import DatasetReader
from rasterio.windows import Window

log = logging.getLogger(__name__)


#: Tile edge of the COGs (and the overview rule that follows from it).
COG_TILE_PX = 512


#: Named GeoTIFF creation profiles.
_GDAL_VERSION = tuple(int(v) for v in rasterio.__gdal_version__.split(".")[:2])


PROFILES: dict[str, dict[str, Any]] = {
    # Work files: written block by block, read back by blocks; fast compression.
    "work-tiff": {
        "driver": "GTiff",
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "zstd",
        "zstd_level": 1,
        "interleave": "band",
        "bigtiff": "IF_SAFER",
    },
    # Work files re-read with a halo (the validity mask, for sieving): small tiles, so a block
    # plus a 16 px halo decompresses (640/512)^2 of the block instead of 9 tiles of 512 px.
    "work-halo-tiff": {
        "driver": "GTiff",
        "tiled": True,
        "blockxsize": 128,
        "blockysize": 128,
        "compress": "zstd",
        "zstd_level": 1,
        "interleave": "band",
        "bigtiff": "IF_SAFER",
    },
    # Heat layers (float32, one band per class). ZSTD level 1 with the floating-point predictor:
    # faster than DEFLATE and as small (GDAL, and QGIS through it, read ZSTD since GDAL 2.3).
    # Bands apart (INTERLEAVE=TILE, or BAND before GDAL 3.11): QGIS shows one class at a time
    # and decompresses only its tiles; smaller, faster and leaner than PIXEL.
    "heat-cog": {
        "driver": "COG",
        "COMPRESS": "ZSTD",
        "LEVEL": 1,
        "PREDICTOR": "YES",
        "INTERLEAVE": "TILE" if _GDAL_VERSION >= (3, 11) else "BAND",
        "BLOCKSIZE": COG_TILE_PX,
        "OVERVIEW_RESAMPLING": "AVERAGE",
        "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": "ALL_CPUS",  # compress tiles in parallel
    },
    # Class map (uint8 with a colour table).
    "class-cog": {
        "driver": "COG",
        "COMPRESS": "ZSTD",
        "LEVEL": 1,
        "PREDICTOR": "YES",
        "BLOCKSIZE": COG_TILE_PX,
        "OVERVIEW_RESAMPLING": "MODE",
        "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": "ALL_CPUS",
    },
}


class TiledWriter:
    """A tiled work GeoTIFF on the scene grid, written block by block; a context manager.

    Args:
        path: the file to create.
        count: number of bands.
        dtype: numpy dtype name, e.g. ``"float32"``.
        crs: the scene CRS.
        transform: the scene transform.
        shape_rc: (rows, cols) of the scene.
        nodata: nodata value (NaN allowed for floats).
        descriptions: one description per band (class names).
        profile: name in :data:`PROFILES`.
        colormap: colour table of band 1 (value -> RGBA), uint8 only.
        tags: dataset metadata items.
    """

    def __init__(
        self,
        path: Path,
        count: int,
        dtype: str,
        crs: CRS,
        transform: Affine,
        shape_rc: tuple[int, int],
        nodata: float | None,
        descriptions: Sequence[str] | None = None,
        profile: str = "work-tiff",
        colormap: Mapping[int, tuple[int, int, int, int]] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self._profile = {
            **PROFILES[profile],
            "count": count,
            "dtype": dtype,
            "crs": crs,
            "transform": transform,
            "height": shape_rc[0],
            "width": shape_rc[1],
            "nodata": nodata,
        }
        if shape_rc[0] < 16 or shape_rc[1] < 16:  # GTiff tiles must fit sensible block sizes
            self._profile.update(tiled=False)
            self._profile.pop("blockxsize", None)
            self._profile.pop("blockysize", None)
        if colormap is not None:
            self._profile["photometric"] = "palette"
        self._descriptions = descriptions
        self._colormap = colormap
        self._tags = tags
        self._dst: Any = None

    def __enter__(self) -> Self:
        self._dst = rasterio.open(self.path, "w", **self._profile)
        try:
            if self._descriptions:
                for i, text in enumerate(self._descriptions, start=1):
                    self._dst.set_band_description(i, text)
            if self._colormap is not None:
                self._dst.write_colormap(1, dict(self._colormap))
            if self._tags:
                self._dst.update_tags(**self._tags)
        except BaseException:
            self._dst.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._dst.close()

    def write(self, window: Window, data: npt.NDArray[Any]) -> None:
        """Write ``(bands, rows, cols)`` data into ``window`` of the scene grid."""
        self._dst.write(data, window=window)

    def update_band_tags(self, band: int, **tags: str) -> None:
        """Set metadata items of one band (1-based)."""
        self._dst.update_tags(band, **tags)


def read_window(
    src: Path | DatasetReader, window: Window, boundless_fill: float = np.nan
) -> npt.NDArray[Any]:
    """Read a window of a work raster, filling the outside with ``boundless_fill``.

    Args:
        src: raster file, or an open dataset (keeps GDAL's block cache warm across reads).
        window: pixel window (may be partly outside the raster).
        boundless_fill: value outside the raster.

    Returns:
        ``(bands, rows, cols)`` array of the file's dtype.
    """
    if isinstance(src, Path):
        with rasterio.open(src) as opened:
            return read_window(opened, window, boundless_fill)
    rows, cols = int(window.height), int(window.width)
    r0, c0 = int(window.row_off), int(window.col_off)
    out = np.full((src.count, rows, cols), boundless_fill, dtype=src.dtypes[0])
    rr0, cc0 = max(r0, 0), max(c0, 0)
    rr1, cc1 = min(r0 + rows, src.height), min(c0 + cols, src.width)
    if rr1 > rr0 and cc1 > cc0:
        inner = Window(cc0, rr0, cc1 - cc0, rr1 - rr0)
        out[:, rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0] = src.read(window=inner)
    return out


def write_cog(src_path: Path, dst_path: Path, profile: str, overviews: bool = True) -> None:
    """Copy a work GeoTIFF to a Cloud-Optimized GeoTIFF with GDAL's COG driver.

    Args:
        src_path: tiled work GeoTIFF.
        dst_path: COG to create.
        profile: ``"heat-cog"`` or ``"class-cog"``.
        overviews: build overviews (``OVERVIEWS=AUTO``) or none.
    """
    options = {k: v for k, v in PROFILES[profile].items() if k != "driver"}
    options["OVERVIEWS"] = "AUTO" if overviews else "NONE"
    rasterio.shutil.copy(
        str(src_path), str(dst_path), driver=PROFILES[profile]["driver"], **options
    )


def write_category_names(path: Path, names: Sequence[str], description: str = "class") -> Path:
    """Write a GDAL PAM sidecar (``<path>.aux.xml``) with the band's category names.

    GDAL (and QGIS through it) reads category names from this file; GeoTIFF cannot hold them.

    Args:
        path: the raster the sidecar belongs to.
        names: category name of each pixel value 0..n-1.
        description: band description.

    Returns:
        The sidecar's path.
    """
    cats = "\n".join(f"      <Category>{escape(n)}</Category>" for n in names)
    xml = (
        "<PAMDataset>\n"
        '  <PAMRasterBand band="1">\n'
        f"    <Description>{escape(description)}</Description>\n"
        "    <CategoryNames>\n"
        f"{cats}\n"
        "    </CategoryNames>\n"
        "  </PAMRasterBand>\n"
        "</PAMDataset>\n"
    )
    aux = Path(f"{path}.aux.xml")
    aux.write_text(xml)
    return aux
