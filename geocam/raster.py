"""Write (and re-read) georeferenced rasters: tiled work GeoTIFFs written block by block, then COGs.

Creation options come from the named :data:`PROFILES` (rio-cogeo style, STYLE C14). A run writes
each finished block into a tiled work GeoTIFF (so memory never holds the scene), then
:func:`write_cog` copies it with GDAL's COG driver, which adds overviews.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
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
    # (Measured when the raw CAM and probabilities were work files too, 4000 x 4000 scene:
    # pass-2 reads 7.1 s -> 3.5 s.)
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
    # on Havel (10 x 768 x 1536) 0.30 s and 10.4 MB vs DEFLATE level 6: 0.63 s and 10.9 MB
    # (GDAL, and QGIS through it, read ZSTD since GDAL 2.3). Bands apart (INTERLEAVE=TILE, or
    # BAND before GDAL 3.11): QGIS shows one class at a time and decompresses only its tiles.
    # Havel, against PIXEL: 6.1 MB vs 8.6 MB, one band read in 9 ms vs 56 ms, written in 0.15-0.18
    # s vs 0.21-0.24 s with 11-51 MiB of memory vs 66-123 MiB.
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

#: Tableau's tab20 palette (matplotlib's ``tab20``), for classes outside EuroSAT.
TAB20: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (174, 199, 232), (255, 127, 14), (255, 187, 120), (44, 160, 44),
    (152, 223, 138), (214, 39, 40), (255, 152, 150), (148, 103, 189), (197, 176, 213),
    (140, 86, 75), (196, 156, 148), (227, 119, 194), (247, 182, 210), (127, 127, 127),
    (199, 199, 199), (188, 189, 34), (219, 219, 141), (23, 190, 207), (158, 218, 229),
)  # fmt: skip

#: Display colours of the EuroSAT classes (RGB); other class names get tab20 colours.
CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "AnnualCrop": (232, 196, 74),
    "Forest": (24, 100, 36),
    "HerbaceousVegetation": (140, 200, 90),
    "Highway": (120, 120, 120),
    "Industrial": (160, 60, 170),
    "Pasture": (250, 160, 110),
    "PermanentCrop": (140, 85, 40),
    "Residential": (220, 40, 40),
    "River": (60, 160, 240),
    "SeaLake": (15, 45, 150),
}


def class_colours(classes: Sequence[str]) -> list[tuple[int, int, int]]:
    """One RGB colour per class name (EuroSAT palette, else Tableau's tab20)."""
    return [CLASS_COLOURS.get(name, TAB20[i % len(TAB20)]) for i, name in enumerate(classes)]


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


def subsample_windows(shape_rc: tuple[int, int], step: int, block_px: int = 512) -> list[Window]:
    """Windows tiling a grid, each starting at a multiple of ``step`` (for strided previews).

    Args:
        shape_rc: (rows, cols) of the grid.
        step: subsampling step in pixels.
        block_px: approximate window edge in pixels (rounded up to a multiple of ``step``).
    """
    edge = step * -(-block_px // step)
    rows, cols = shape_rc
    return [
        Window(c, r, min(edge, cols - c), min(edge, rows - r))
        for r in range(0, rows, edge)
        for c in range(0, cols, edge)
    ]


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

    GDAL's COG driver computes the overviews of a 10-band float32 layer slowly (a 4000 x 4000
    scene: 3.8 of the COG's 4.7 s); averaging each block 2 x 2 in numpy as it is written costs
    about 4 ms per 512 px block. :meth:`vrt` then ties the levels together as the overviews of one
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
            path, transform=transform, shape_rc=shape_rc, descriptions=descriptions, tags=tags,
            **grid,
        )  # fmt: skip
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
