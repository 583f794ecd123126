"""A float work GeoTIFF with its AVERAGE overviews, built block by block as it is written."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Self
from xml.sax.saxutils import escape

import numpy as np
import numpy.typing as npt
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from .raster import COG_TILE_PX, TiledWriter

log = logging.getLogger(__name__)


def overview_factors(shape_rc: tuple[int, int], tile_px: int = COG_TILE_PX) -> list[int]:
    """The overview factors GDAL's COG driver makes by default: halve while a side exceeds a tile.

    Args:
        shape_rc: (rows, cols) of the full-resolution raster.
        tile_px: the COG's tile edge.
    """
    factors: list[int] = []
    f = 1
    while max(-(-shape_rc[0] // f), -(-shape_rc[1] // f)) > tile_px:
        f *= 2
        factors.append(f)
    return factors


def average_2x(data: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Mean of each 2 x 2 pixels of ``(bands, rows, cols)``, ignoring NaN (GDAL's AVERAGE).

    Odd rows and columns are padded with NaN: an edge pixel averages what it covers. All-NaN
    groups stay NaN.
    """
    bands, rows, cols = data.shape
    if rows % 2 or cols % 2:
        padded = np.full((bands, rows + rows % 2, cols + cols % 2), np.nan, np.float32)
        padded[:, :rows, :cols] = data
        data = padded
    quads = (data[:, 0::2, 0::2], data[:, 1::2, 0::2], data[:, 0::2, 1::2], data[:, 1::2, 1::2])
    total = quads[0] + quads[1] + quads[2] + quads[3]
    if not np.isnan(total).any():
        out: npt.NDArray[np.float32] = total * np.float32(0.25)
        return out
    count = sum(((~np.isnan(q)).astype(np.float32) for q in quads), np.zeros_like(total))
    total = sum((np.nan_to_num(q, nan=0.0) for q in quads), np.zeros_like(total))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (total / count).astype(np.float32)
    return out


class PyramidWriter:
    """A float work GeoTIFF and its AVERAGE overviews, written block by block; a context manager.

    GDAL's COG driver computes the overviews of a many-band float32 layer slowly, most of the
    COG's time; averaging each block 2 x 2 in numpy as it is written costs little. :meth:`vrt` then ties the levels together as the overviews of one
    VRT, which the COG driver copies as they are. Block origins must be multiples of every
    overview factor (``block_px`` a multiple of them); otherwise no levels are written and the COG
    driver computes them.

    Args:
        path: the full-resolution file to create; levels go next to it (``<stem>.ovr<f>.tif``).
        count: number of bands.
        crs: the scene CRS.
        transform: the scene transform.
        shape_rc: (rows, cols) of the scene.
        block_px: edge of the blocks that will be written.
        descriptions: one description per band (class names).
        tags: dataset metadata items.
        overviews: write the levels (False: the full-resolution file only).
    """

    def __init__(
        self,
        path: Path,
        count: int,
        crs: CRS,
        transform: Affine,
        shape_rc: tuple[int, int],
        block_px: int,
        descriptions: Sequence[str] | None = None,
        tags: Mapping[str, str] | None = None,
        overviews: bool = True,
    ) -> None:
        self.path = Path(path)
        factors = overview_factors(shape_rc) if overviews else []
        self.factors = factors if all(block_px % f == 0 for f in factors) else []
        grid = {"count": count, "dtype": "float32", "crs": crs, "nodata": float("nan")}
        self.base = TiledWriter(
            path,
            transform=transform,
            shape_rc=shape_rc,
            descriptions=descriptions,
            tags=tags,
            **grid,
        )
        self.levels = [
            TiledWriter(
                self.path.with_name(f"{self.path.stem}.ovr{f}.tif"),
                transform=transform @ Affine.scale(f),
                shape_rc=(-(-shape_rc[0] // f), -(-shape_rc[1] // f)),
                **grid,
            )
            for f in self.factors
        ]

    def __enter__(self) -> Self:
        with ExitStack() as stack:
            for writer in (self.base, *self.levels):
                stack.enter_context(writer)
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    def write(self, window: Window, data: npt.NDArray[np.float32]) -> None:
        """Write ``(bands, rows, cols)`` data into ``window`` and its averages into every level."""
        self.base.write(window, data)
        row, col = int(window.row_off), int(window.col_off)
        for f, level in zip(self.factors, self.levels, strict=True):
            data = average_2x(data)
            level.write(Window(col // f, row // f, data.shape[2], data.shape[1]), data)

    def update_band_tags(self, band: int, **tags: str) -> None:
        """Set metadata items of one band (1-based)."""
        self.base.update_band_tags(band, **tags)

    def vrt(self) -> Path:
        """After closing: a VRT of the full-resolution file with the levels as its overviews.

        Returns:
            The VRT's path, or the full-resolution file when no levels were written.
        """
        if not self.factors:
            return self.path
        with rasterio.open(self.path) as src:
            crs, gt, tags = src.crs, src.transform.to_gdal(), src.tags()
            bands = [(src.descriptions[i], src.tags(i + 1)) for i in range(src.count)]
            rows, cols = src.height, src.width

        def metadata(items: Mapping[str, str]) -> str:
            mdi = "".join(f'<MDI key="{escape(k)}">{escape(v)}</MDI>' for k, v in items.items())
            return f"<Metadata>{mdi}</Metadata>" if items else ""

        def source(tag: str, path: Path, band: int) -> str:
            return (
                f'<{tag}><SourceFilename relativeToVRT="1">{escape(path.name)}</SourceFilename>'
                f"<SourceBand>{band}</SourceBand></{tag}>"
            )

        body = "".join(
            f'<VRTRasterBand dataType="Float32" band="{b}">'
            f"<Description>{escape(desc or '')}</Description><NoDataValue>nan</NoDataValue>"
            f"{metadata(band_tags)}{source('SimpleSource', self.path, b)}"
            + "".join(source("Overview", level.path, b) for level in self.levels)
            + "</VRTRasterBand>"
            for b, (desc, band_tags) in enumerate(bands, start=1)
        )
        xml = (
            f'<VRTDataset rasterXSize="{cols}" rasterYSize="{rows}">'
            f"<SRS>{escape(crs.to_wkt()) if crs else ''}</SRS>"
            f"<GeoTransform>{', '.join(repr(v) for v in gt)}</GeoTransform>"
            f"{metadata(tags)}{body}</VRTDataset>\n"
        )
        out = self.path.with_suffix(".vrt")
        out.write_text(xml)
        return out
