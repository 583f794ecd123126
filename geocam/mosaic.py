"""Across the scenes of a batch, for QGIS: VRT mosaics and one GeoPackage of every polygon.

Scenes are grouped by CRS (a VRT and a GeoPackage layer have one CRS each); each group gets

- ``batch_classes_<CRS>.vrt``: the class maps (uint8, nodata 255, the class map's colour table
  and class names), and ``batch_cam_<CRS>.vrt``: the heat layers (float32, one band per class,
  NaN nodata). As ``gdalbuildvrt -resolution highest`` lays them out: the group's finest pixel
  size, the union of the scenes' extents, scenes placed in name order (a later scene's valid
  pixels cover an earlier one's where they overlap; nodata lets the one below show);
- a layer ``salient_<CRS>`` in ``batch_salient.gpkg``: every scene's polygons, with a ``scene``
  column and the polygon's ``fid`` in its scene's GeoPackage as ``scene_fid``.

``<CRS>`` is ``EPSG32633`` for an EPSG code, else ``CRS1``, ``CRS2``... in order of first
appearance. Sources are referenced relative to the VRT, so the batch folder can move. Files are
written under a temporary name and renamed; their bytes depend only on the scenes' outputs.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import rasterio
from affine import Affine
from rasterio.crs import CRS

from .colours import class_colours
from .io.vectors import ogr_config, write_gpkg, write_text
from .pipeline import OUTPUT_NAMES, SceneOutputs
from .project import SceneLayers
from .stitch import NO_CLASS
from .styles import salient_qml

#: The merged GeoPackage's file name in the batch folder.
BATCH_GPKG = "batch_salient.gpkg"


@dataclass(frozen=True, slots=True)
class _Source:
    """One scene's raster as a VRT source."""

    scene: str
    path: Path
    crs: CRS
    transform: Affine
    shape_rc: tuple[int, int]
    block_rc: tuple[int, int]
    count: int
    descriptions: tuple[str | None, ...]


def _source(scene: str, path: Path) -> _Source:
    with rasterio.open(path) as src:
        block_rc = src.block_shapes[0]
        return _Source(
            scene,
            path,
            src.crs,
            src.transform,
            src.shape,
            block_rc,
            src.count,
            tuple(src.descriptions),
        )


def crs_groups(crss: Sequence[CRS]) -> list[tuple[str, list[int]]]:
    """Group positions by CRS: ``[(tag, [indexes...]), ...]`` in order of first appearance."""
    groups: dict[str, list[int]] = {}
    tags: dict[str, str] = {}
    for i, crs in enumerate(crss):
        wkt = crs.to_wkt()
        if wkt not in tags:
            epsg = crs.to_epsg()
            tags[wkt] = f"EPSG{epsg}" if epsg else f"CRS{len(tags) + 1}"
        groups.setdefault(tags[wkt], []).append(i)
    return list(groups.items())


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def vrt_xml(
    sources: Sequence[_Source],
    vrt_dir: Path,
    dtype: str,
    nodata: str,
    colours: Sequence[tuple[int, int, int]] | None = None,
    classes: Sequence[str] | None = None,
) -> str:
    """A VRT mosaic of rasters sharing a CRS and bands, at the finest pixel size among them.

    Args:
        sources: the rasters, bottom first.
        vrt_dir: the VRT's folder (sources are referenced relative to it).
        dtype: GDAL data type name (``"Byte"``, ``"Float32"``).
        nodata: nodata value as VRT text (``"255"``, ``"nan"``).
        colours: a colour table for a class map (index = class); entry 255 is transparent.
        classes: category names for a class map.
    """
    res_x = min(abs(s.transform.a) for s in sources)
    res_y = min(abs(s.transform.e) for s in sources)
    bounds = [
        (
            s.transform.c,
            s.transform.f + s.transform.e * s.shape_rc[0],
            s.transform.c + s.transform.a * s.shape_rc[1],
            s.transform.f,
        )
        for s in sources
    ]
    west, north = min(b[0] for b in bounds), max(b[3] for b in bounds)
    east, south = max(b[2] for b in bounds), min(b[1] for b in bounds)
    width = max(1, math.ceil((east - west) / res_x - 1e-6))
    height = max(1, math.ceil((north - south) / res_y - 1e-6))
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS", dataAxisToSRSAxisMapping="1,2").text = sources[0].crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(
        _num(v) for v in (west, res_x, 0.0, north, 0.0, -res_y)
    )
    for band in range(1, sources[0].count + 1):
        vb = ET.SubElement(root, "VRTRasterBand", dataType=dtype, band=str(band))
        description = sources[0].descriptions[band - 1]
        if description:
            ET.SubElement(vb, "Description").text = description
        ET.SubElement(vb, "NoDataValue").text = nodata
        if colours is not None:
            ET.SubElement(vb, "ColorInterp").text = "Palette"
            table = ET.SubElement(vb, "ColorTable")
            for i in range(256):
                r, g, b = colours[i] if i < len(colours) else (0, 0, 0)
                alpha = 0 if i == NO_CLASS or i >= len(colours) else 255
                ET.SubElement(table, "Entry", c1=str(r), c2=str(g), c3=str(b), c4=str(alpha))
        if classes is not None:
            names = ET.SubElement(vb, "CategoryNames")
            for name in classes:
                ET.SubElement(names, "Category").text = name
        for s, (w, _, e, n) in zip(sources, bounds, strict=True):
            cs = ET.SubElement(vb, "ComplexSource")
            rel = Path(os.path.relpath(s.path, vrt_dir)).as_posix()
            ET.SubElement(cs, "SourceFilename", relativeToVRT="1").text = rel
            ET.SubElement(cs, "SourceBand").text = str(band)
            rows, cols = s.shape_rc
            ET.SubElement(
                cs,
                "SourceProperties",
                RasterXSize=str(cols),
                RasterYSize=str(rows),
                DataType=dtype,
                BlockXSize=str(s.block_rc[1]),
                BlockYSize=str(s.block_rc[0]),
            )
            ET.SubElement(cs, "SrcRect", xOff="0", yOff="0", xSize=str(cols), ySize=str(rows))
            ET.SubElement(
                cs,
                "DstRect",
                xOff=_num((w - west) / res_x),
                yOff=_num((north - n) / res_y),
                xSize=_num((e - w) / res_x),
                ySize=_num(rows * abs(s.transform.e) / res_y),
            )
            ET.SubElement(cs, "NODATA").text = nodata
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def _with_layers(runs: Sequence[SceneOutputs]) -> list[tuple[SceneLayers, SceneOutputs]]:
    """The runs that have a project description, in scene-name order."""
    pairs = [(r.layers, r) for r in runs if r.layers is not None]
    return sorted(pairs, key=lambda pair: pair[0].name)


def _replace_into(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    write_text(tmp, text)
    os.replace(tmp, path)


def write_mosaics(out_dir: Path, runs: Sequence[SceneOutputs]) -> list[Path]:
    """Write the class-map and heat VRTs of a batch, one pair per CRS; return their paths.

    Args:
        out_dir: the batch folder.
        runs: the scene runs (with ``layers``), in any order.
    """
    pairs = _with_layers(runs)
    if not pairs:
        return []
    cls = [_source(lay.name, r.out_dir / OUTPUT_NAMES["classes"]) for lay, r in pairs]
    cam = [_source(lay.name, r.out_dir / OUTPUT_NAMES["cam"]) for lay, r in pairs]
    names = list(pairs[0][0].classes)
    written = []
    for tag, idx in crs_groups([CRS.from_wkt(lay.crs_wkt) for lay, _ in pairs]):
        path = out_dir / f"batch_classes_{tag}.vrt"
        _replace_into(
            path,
            vrt_xml(
                [cls[i] for i in idx], out_dir, "Byte", str(NO_CLASS), class_colours(names), names
            ),
        )
        written.append(path)
        path = out_dir / f"batch_cam_{tag}.vrt"
        _replace_into(path, vrt_xml([cam[i] for i in idx], out_dir, "Float32", "nan"))
        written.append(path)
    return written


def write_batch_polygons(out_dir: Path, runs: Sequence[SceneOutputs]) -> Path | None:
    """Write every scene's polygons to ``batch_salient.gpkg``, one layer per CRS.

    Args:
        out_dir: the batch folder.
        runs: the scene runs (with ``layers``), in any order.

    Returns:
        The GeoPackage, or None when no run has one.
    """
    pairs = _with_layers(runs)
    frames: list[gpd.GeoDataFrame] = []
    dates: list[str] = []
    models: set[str] = set()
    versions: set[str] = set()
    for layers, run in pairs:
        path = run.out_dir / OUTPUT_NAMES["gpkg"]
        # GDAL writes the GeoPackage's metadata to a .aux.xml sidecar when it closes a file it
        # read, unless PAM is off: the scene's folder stays as its run left it.
        with ogr_config(GDAL_PAM_ENABLED="NO"):
            frame = pyogrio.read_dataframe(path, layer="salient", fid_as_index=True)
            meta = pyogrio.read_info(path, layer="salient").get("layer_metadata") or {}
        frame.insert(0, "scene", layers.name)
        frame.insert(1, "scene_fid", frame.index.astype("int64"))
        frames.append(frame)
        dates.append(meta.get("GEOCAM_DATE", "1970-01-01T00:00:00Z"))
        models.add(meta.get("GEOCAM_MODEL_SHA256", ""))
        versions.add(meta.get("GEOCAM_VERSION", ""))
    if not frames:
        return None
    names = list(pairs[0][0].classes)
    style = salient_qml(names, class_colours(names))
    date = max(dates)
    path = out_dir / BATCH_GPKG
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.unlink(missing_ok=True)
    metadata = {
        "GEOCAM_VERSION": ",".join(sorted(versions)),
        "GEOCAM_MODEL_SHA256": ",".join(sorted(models)),
        "GEOCAM_SCENES": ",".join(lay.name for lay, _ in pairs),
        "GEOCAM_DATE": date,
    }
    for tag, idx in crs_groups([CRS.from_wkt(lay.crs_wkt) for lay, _ in pairs]):
        merged = gpd.GeoDataFrame(
            pd.concat([frames[i] for i in idx], ignore_index=True), crs=frames[idx[0]].crs
        )
        merged.insert(0, "fid", range(1, len(merged) + 1))
        write_gpkg(
            merged,
            tmp,
            layer=f"salient_{tag}",
            metadata=metadata,
            style_qml=style,
            description=f"geocam salient polygons of {len(idx)} scenes",
            date=date.replace("Z", ".000Z"),
        )
    os.replace(tmp, path)
    return path
