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
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from xml.etree import ElementTree

import numpy as np
import numpy.typing as npt
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from .config import BandSpec, normalise_band_name
from .errors import BandError, BandOrderWarning, NodataWarning, SceneError
from .model import ModelCard
from .radiometry import Radiometry, decide_radiometry, detect_level

log = logging.getLogger(__name__)

#: Sentinel-2 band order in products (B8A after B08); band files are stacked in this order.
S2_PRODUCT_ORDER: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07",
    "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip

#: A Sentinel-2 band file: ``<prefix>_B04.jp2``, ``<prefix>_B04_10m.jp2``, ``<prefix>_B8A.tif``.
BAND_FILE = re.compile(
    r"^(?P<prefix>.*?)[_.-]?(?P<band>B(?:0?[1-9]|1[0-2]|8A))(?:_(?P<res>\d+)m)?"
    r"\.(?:jp2|tif|tiff)$",
    re.IGNORECASE,
)
_BASELINE = re.compile(r"_N(\d{4})_")
_METADATA_FILES = ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml")


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


@dataclass(frozen=True, slots=True)
class BandMatch:
    """Which scene bands feed the model.

    Attributes:
        indexes: 0-based positions in ``Scene.bands`` in the model's channel order.
        how: ``"name"``, ``"--bands"`` or ``"position"``.
    """

    indexes: tuple[int, ...]
    how: str


def group_inputs(paths: Sequence[Path]) -> list[tuple[str, tuple[Path, ...]]]:
    """Group command-line inputs into scenes.

    A directory is one scene made of the Sentinel-2 band files below it (the finest resolution of
    each band is kept). Files named like Sentinel-2 band files (``*_B04.jp2``, ``*_B04_10m.jp2``)
    that share a prefix form one scene; any other file is a scene of its own.

    Args:
        paths: files and directories as given.

    Returns:
        (scene name, files) per scene, in input order.

    Raises:
        SceneError: a path does not exist or a directory holds no band files.
    """
    scenes: dict[str, list[Path]] = {}
    names: dict[str, str] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise SceneError(f"`scene`={str(path)!r} does not exist; pass a GeoTIFF or band files")
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and BAND_FILE.match(p.name))
            if not found:
                raise SceneError(
                    f"`scene`={str(path)!r} is a directory without Sentinel-2 band files "
                    "(*_B04.jp2 ...); pass a GeoTIFF or the band files"
                )
            key = str(path.resolve())  # two folders of one name are two scenes
            scenes.setdefault(key, []).extend(found)
            names.setdefault(key, path.resolve().name or "scene")
            continue
        match = BAND_FILE.match(path.name)
        key = f"{path.parent.resolve()}/{match.group('prefix')}" if match else str(path.resolve())
        scenes.setdefault(key, []).append(path)
        names.setdefault(key, Path(key).name or "scene")
    out = []
    seen: set[frozenset[Path]] = set()
    for key, given in scenes.items():
        files: list[Path] = []
        for file in given:  # a file given twice is read once
            if all(file.resolve() != f.resolve() for f in files):
                files.append(file)
        resolved = frozenset(f.resolve() for f in files)
        if resolved in seen:  # the same scene given twice (a.tif ./a.tif) runs once
            continue
        seen.add(resolved)
        name = names[key]
        if len(files) == 1 and not Path(key).is_dir():
            name = files[0].stem
        out.append((_safe_name(name), tuple(files)))
    return out


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "scene"


def _open(path: Path) -> DatasetReader:
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


def open_scene(paths: Sequence[Path], name: str | None = None, nodata: float | None = None,
               dn_offset: float | None = None) -> Scene:  # fmt: skip
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
    infos = []
    for path in paths:
        if not path.is_file():
            raise SceneError(f"`scene`={str(path)!r} is not a file; pass a GeoTIFF or band files")
        with _open(path) as src:
            _check_georeferencing(path, src)
            infos.append(
                {
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
            )
    ref = min(infos, key=lambda i: i["res"])
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
    is_s2 = sum(b.name is not None for b in bands) >= 3
    if nodata is not None:
        nodata_value, nodata_source = float(nodata), "--nodata"
    elif ref["nodata"] is not None:
        nodata_value, nodata_source = float(ref["nodata"]), "scene nodata value"
    elif is_s2:
        nodata_value, nodata_source = 0.0, "Sentinel-2 convention (NODATA = 0)"
    elif np.dtype(ref["dtype"]).kind == "f":
        nodata_value, nodata_source = None, "none: NaN and infinite values are nodata"
        warnings.warn(
            f"`scene`={str(paths[0])!r} has no nodata value; NaN and infinite pixels are nodata, "
            "every other pixel is valid (pass --nodata to set one)",
            NodataWarning,
            stacklevel=2,
        )
    else:
        nodata_value, nodata_source = None, "none: every pixel is valid"
        warnings.warn(
            f"`scene`={str(paths[0])!r} has no nodata value; every pixel is treated as valid "
            "(pass --nodata to set one)",
            NodataWarning,
            stacklevel=2,
        )
    meta = _product_metadata(paths)
    if dn_offset is not None:
        offset, offset_source = float(dn_offset), "--dn-offset"
    else:
        offset, offset_source = detect_dn_offset(paths, ref["tags"], meta)
    return Scene(
        name=name or _safe_name(paths[0].stem),
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
        metadata_level=_metadata_text(meta, "PROCESSING_LEVEL"),
    )


def _finest_per_name(bands: list[BandSource], res: dict[Path, float]) -> list[BandSource]:
    best: dict[str, BandSource] = {}
    unnamed = []
    for band in bands:
        if band.name is None:
            unnamed.append(band)
        elif band.name not in best or res[band.path] < res[best[band.name].path]:
            best[band.name] = band
    return [*best.values(), *unnamed]


def _product_metadata(paths: Sequence[Path]) -> tuple[str, Path, ElementTree.Element] | None:
    """The product metadata file up to four folders above the first file, or None.

    Returns:
        (``MTD_MSIL2A.xml`` or ``MTD_MSIL1C.xml``, its path, its parsed root element).
    """
    first = Path(paths[0]).resolve()
    for folder in list(first.parents)[:5]:
        for meta_name in _METADATA_FILES:
            meta = folder / meta_name
            if meta.is_file():
                try:
                    return meta_name, meta, ElementTree.parse(meta).getroot()
                except ElementTree.ParseError:
                    continue
    return None


def _metadata_text(meta: tuple[str, Path, ElementTree.Element] | None, tag: str) -> str | None:
    """The text of the first element named ``tag`` (namespaces ignored) in the metadata."""
    if meta is None:
        return None
    for el in meta[2].iter():
        if el.tag.split("}")[-1] == tag and el.text:
            return el.text.strip()
    return None


def detect_dn_offset(
    paths: Sequence[Path],
    tags: Mapping[str, str],
    meta: tuple[str, Path, ElementTree.Element] | None = None,
) -> tuple[float, str]:
    """Find the offset to add to Sentinel-2 digital numbers (-1000 from baseline 04.00).

    Looks, in order, at the product metadata file (``MTD_MSIL2A.xml``: ``BOA_ADD_OFFSET``,
    ``MTD_MSIL1C.xml``: ``RADIO_ADD_OFFSET``, ``PROCESSING_BASELINE``), at the GeoTIFF tags
    (``BOA_ADD_OFFSET*``, ``RADIO_ADD_OFFSET*``, ``PROCESSING_BASELINE``), and at a processing
    baseline in the file path (``_N0400_``).

    Args:
        paths: the scene's files.
        tags: the reference file's dataset tags.
        meta: the product metadata (see :func:`_product_metadata`); None: look for it.

    Returns:
        (offset, a description of where it came from); (0.0, ...) when nothing says otherwise.
    """
    meta = meta if meta is not None else _product_metadata(paths)
    if meta is not None:
        meta_name, meta_path, _ = meta
        for tag in ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET"):
            text = _metadata_text(meta, tag)
            if text:
                return float(text), f"{meta_name} {tag} ({meta_path})"
        text = _metadata_text(meta, "PROCESSING_BASELINE")
        if text:
            off = -1000.0 if float(text) >= 4.0 else 0.0
            return off, f"{meta_name} PROCESSING_BASELINE {text}"
    for key, value in tags.items():
        if "ADD_OFFSET" in key.upper():
            try:
                return float(value), f"tag {key}"
            except ValueError:
                continue
    for key, value in tags.items():
        if key.upper().endswith("PROCESSING_BASELINE"):
            try:
                return (-1000.0 if float(value) >= 4.0 else 0.0), f"tag {key}={value}"
            except ValueError:
                continue
    for path in paths:
        match = _BASELINE.search(str(Path(path).resolve()))
        if match:
            baseline = int(match.group(1))
            return (-1000.0 if baseline >= 400 else 0.0), f"processing baseline N{baseline:04d}"
    return 0.0, "default (no offset metadata found)"


def match_bands(scene: Scene, model_bands: Sequence[str], spec: BandSpec | None) -> BandMatch:
    """Decide which scene bands feed the model's input channels.

    Args:
        scene: the opened scene.
        model_bands: the model's Sentinel-2 band names in channel order.
        spec: an explicit mapping (``--bands``), or None to match by name.

    Returns:
        The matched scene band positions (0-based, model channel order).

    Raises:
        BandError: a model band is missing, an index is out of range, or the scene has no band
            names and a different band count than the model.
    """
    count = len(scene.bands)
    available = ", ".join(
        f"{i + 1}={b.name}" if b.name else str(i + 1) for i, b in enumerate(scene.bands)
    )

    def check_index(index: int) -> int:
        if not 1 <= index <= count:
            raise BandError(
                f"`bands` index {index} is out of range: the scene has {count} band(s) "
                f"({available})"
            )
        return index - 1

    wanted = ", ".join(model_bands)
    if spec is not None and spec.named:
        mapping = dict(spec.named)
        missing = [b for b in model_bands if b not in mapping]
        if missing:
            raise BandError(
                f"`bands`={spec} lacks model band(s) {', '.join(missing)}; the model needs "
                f"{wanted}: map each, e.g. {','.join(f'{b}=N' for b in model_bands)}"
            )
        extra = [b for b in mapping if b not in model_bands]
        if extra:
            raise BandError(
                f"`bands`={spec} maps band(s) {', '.join(extra)} that the model does not use "
                f"(it needs {wanted}); drop them, e.g. "
                f"{','.join(f'{b}={mapping[b]}' for b in model_bands)}"
            )
        return BandMatch(tuple(check_index(mapping[b]) for b in model_bands), "--bands")
    if spec is not None:
        if len(spec.positional) != len(model_bands):
            raise BandError(
                f"`bands`={spec} gives {len(spec.positional)} index(es) but the model needs "
                f"{len(model_bands)} ({wanted}); give one scene band per model band, in order"
            )
        return BandMatch(tuple(check_index(i) for i in spec.positional), "--bands")
    if count < len(model_bands):
        raise BandError(
            f"scene {scene.name!r} has {count} band(s) ({available}) but the model needs "
            f"{len(model_bands)} ({wanted}); give a scene (or the band files) with those bands"
        )
    names = [b.name for b in scene.bands]
    if any(names):
        missing = [b for b in model_bands if b not in names]
        if missing:
            raise BandError(
                f"scene {scene.name!r} lacks band(s) {', '.join(missing)} that the model needs "
                f"({wanted}); scene bands: {available}. Add them or map bands with --bands "
                f"{','.join(f'{b}=N' for b in model_bands)}"
            )
        indexes = tuple(names.index(b) for b in model_bands)
        if list(indexes) != sorted(indexes) or len(indexes) != count:
            log.info("scene bands %s reordered to the model's %s", indexes, wanted)
        return BandMatch(indexes, "name")
    if count == len(model_bands):
        warnings.warn(
            f"scene {scene.name!r} has no band names; its {count} bands are used in file order "
            f"as {wanted} (pass --bands to map them explicitly)",
            BandOrderWarning,
            stacklevel=2,
        )
        return BandMatch(tuple(range(count)), "position")
    raise BandError(
        f"scene {scene.name!r} has {count} unnamed band(s) but the model needs {wanted}; name "
        "the bands (band descriptions) or map them with --bands, e.g. "
        f"{','.join(f'{b}={i + 1}' for i, b in enumerate(model_bands))}"
    )


class SceneReader:
    """Windowed reads of selected bands on the scene grid; a context manager owning the files.

    Args:
        scene: the opened scene.
        band_indexes: 0-based positions in ``scene.bands`` to read, in output order.
    """

    def __init__(self, scene: Scene, band_indexes: Sequence[int]) -> None:
        self.scene = scene
        self.band_indexes = tuple(band_indexes)
        self._stack = ExitStack()
        self._sources: dict[Path, Any] = {}
        self._float = False  # any band read is floating point: NaN and infinities are nodata

    def __enter__(self) -> Self:
        scene = self.scene
        try:
            for pos in self.band_indexes:
                band = scene.bands[pos]
                if band.path in self._sources:
                    continue
                src = self._stack.enter_context(_open(band.path))
                if (src.height, src.width) != scene.shape_rc or src.transform != scene.transform:
                    src = self._stack.enter_context(
                        WarpedVRT(
                            src,
                            crs=scene.crs,
                            transform=scene.transform,
                            width=scene.width,
                            height=scene.height,
                            resampling=Resampling.nearest,
                        )
                    )
                self._sources[band.path] = src
                self._float |= np.dtype(src.dtypes[band.index - 1]).kind == "f"
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    def read(self, window: Window) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """Read a window that may reach outside the scene.

        Args:
            window: pixel window in the scene grid (integer offsets; may be partly outside).

        Returns:
            Digital numbers ``(bands, rows, cols)`` float32 (0 outside the scene and where not
            finite) and the valid mask ``(rows, cols)`` bool: inside the scene, no band equal
            to nodata, and (float scenes) every band finite.

        Raises:
            SceneError: a file cannot be read there (damaged or missing tiles, I/O errors).
        """
        rows, cols = int(window.height), int(window.width)
        r0, c0 = int(window.row_off), int(window.col_off)
        dn = np.zeros((len(self.band_indexes), rows, cols), dtype=np.float32)
        valid = np.zeros((rows, cols), dtype=bool)
        rr0, cc0 = max(r0, 0), max(c0, 0)
        rr1 = min(r0 + int(window.height), self.scene.height)
        cc1 = min(c0 + int(window.width), self.scene.width)
        if rr1 <= rr0 or cc1 <= cc0:
            return dn, valid
        inner = Window(cc0, rr0, cc1 - cc0, rr1 - rr0)
        dst = (slice(rr0 - r0, rr1 - r0), slice(cc0 - c0, cc1 - c0))
        for k, pos in enumerate(self.band_indexes):
            band = self.scene.bands[pos]
            src = self._sources[band.path]
            try:
                dn[k][dst] = src.read(band.index, window=inner)
            except (RasterioError, OSError) as err:
                cause = err.__cause__ or err.__context__ or err
                raise SceneError(
                    f"`scene`={str(band.path)!r} cannot be read at rows {rr0}-{rr1}, columns "
                    f"{cc0}-{cc1} of band {band.index} ({str(cause).strip() or err}); the file is "
                    "damaged or incomplete: fetch or export it again"
                ) from err
        valid[dst] = True
        if self._float:
            finite = np.isfinite(dn)
            if not finite.all():
                valid &= finite.all(axis=0)
                dn[~finite] = 0.0
        if self.scene.nodata is not None and not np.isnan(self.scene.nodata):
            valid &= ~np.any(dn == np.float32(self.scene.nodata), axis=0)
        return dn, valid


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


def sample_valid(
    reader: SceneReader, windows_per_side: int = 8, window_px: int = 64
) -> npt.NDArray[np.float32]:
    """Valid digital numbers from windows spread evenly over the scene (for statistics).

    Args:
        reader: an entered reader of the bands to sample.
        windows_per_side: windows along each axis.
        window_px: window edge in pixels.

    Returns:
        ``(bands, n)`` float32: the valid pixels of every sampled window.
    """
    height, width = reader.scene.shape_rc
    rows = np.linspace(0, max(height - window_px, 0), windows_per_side).round().astype(int)
    cols = np.linspace(0, max(width - window_px, 0), windows_per_side).round().astype(int)
    parts = []
    for r in sorted(set(rows.tolist())):
        for c in sorted(set(cols.tolist())):
            dn, valid = reader.read(Window(c, r, min(window_px, width), min(window_px, height)))
            parts.append(dn[:, valid])
    return np.concatenate(parts, axis=1)


def scene_radiometry(
    scene: Scene,
    match: BandMatch,
    *,
    level: str | None = None,
    reflectance_scale: float | None = None,
    l2a_path_radiance: bool,
    dn_offset_declared: bool = False,
    check: bool = True,
) -> Radiometry:
    """Decide and check how the scene's digital numbers become reflectance x 10000.

    Reads a sample of the model's bands and hands it with what the files say (dtype, GDAL
    scale/offset, tags, product metadata, names) to :func:`geocam.radiometry.decide_radiometry`.

    Args:
        scene: the opened scene.
        match: the scene bands feeding the model.
        level: ``--level`` (``"L1C"`` or ``"L2A"``), or None to detect it.
        reflectance_scale: ``--reflectance-scale``, or None to detect it.
        dn_offset_declared: the scene's ``dn_offset`` was given by the user.
        l2a_path_radiance: make L2A scenes L1C-like (see ``decide_radiometry``).
        check: refuse implausible values.

    Raises:
        RadiometryError: see :func:`geocam.radiometry.decide_radiometry`.
    """
    detected = detect_level(
        level,
        scene.metadata_level,
        [str(p.resolve()) for p in scene.paths],
        scene.tags,
        scene.dn_offset_source,
    )
    with SceneReader(scene, match.indexes) as reader:
        sample = sample_valid(reader)
    return decide_radiometry(
        dtype=scene.dtype,
        positions=match.indexes,
        gdal_scales=[b.scale for b in scene.bands],
        gdal_offsets=[b.offset for b in scene.bands],
        declared_scale=reflectance_scale,
        dn_offset=scene.dn_offset,
        dn_offset_source=scene.dn_offset_source,
        dn_offset_declared=dn_offset_declared,
        level=detected,
        sample_dn=sample,
        band_names=scene.band_names,
        l2a_path_radiance=l2a_path_radiance,
        check=check,
    )
