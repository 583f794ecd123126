"""The QGIS project of a run: one group per scene, its layers named after the scene and the class.

Pure XML building; :func:`geocam.io.vectors.write_text` saves it. The project (``.qgs``, QGIS 3.22
LTR format) stores relative paths (``./cam.tif``) and the scene CRS, and holds, top to bottom:

- the salient polygons, categorised by class (:func:`geocam.styles.salient_renderer`);
- the class map (paletted, only the model's classes), half transparent so the heat shows;
- a mutually exclusive group with one heat layer per class (a band of ``cam.tif`` each, 0-1):
  ticking another class shows its heat instead; the scene's most frequent class is ticked;
- the preview PNG (georeferenced by its world file), unticked.

QGIS 3.22 ignores layer ids of 10 characters or fewer and reads the project CRS only with
``SpatialRefSys/ProjectionsEnabled`` = 1; both are respected here.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from .styles import (
    QGIS_VERSION,
    RGB,
    classes_renderer,
    heat_renderer,
    preview_renderer,
    raster_pipe,
    salient_renderer,
    to_text,
)

#: Opacity of the class map in the project (the heat below shows through).
CLASSES_OPACITY = 0.5

Extent = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class SceneLayers:
    """What the project shows of one scene run.

    Attributes:
        name: scene name (group and layer names).
        folder: the scene's output folder relative to the project file, POSIX (``"."``).
        crs_wkt: the scene CRS as WKT.
        crs_authid: ``"EPSG:32633"``, or None for a CRS without an authority code.
        extent: (xmin, ymin, xmax, ymax) of the scene in its CRS.
        classes: class names in index order (band ``i + 1`` of the heat is class ``i``).
        colours: RGB colour per class.
        heat_band: 1-based heat band ticked when the project opens.
        cam: heat raster file name.
        class_map: class map file name.
        polygons: GeoPackage file name and its layer.
        preview: georeferenced preview file name, or None where none was written.
        preview_extent: (xmin, ymin, xmax, ymax) of the preview image in the scene CRS.
    """

    name: str
    folder: str
    crs_wkt: str
    crs_authid: str | None
    extent: Extent
    classes: tuple[str, ...]
    colours: tuple[RGB, ...]
    heat_band: int
    cam: str = "cam.tif"
    class_map: str = "classes.tif"
    polygons: tuple[str, str] = ("salient.gpkg", "salient")
    preview: str | None = None
    preview_extent: Extent | None = None


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    child = ET.SubElement(parent, tag, attrib)
    if text is not None:
        child.text = text
    return child


def _srs(parent: ET.Element, scene: SceneLayers) -> None:
    srs = _sub(parent, "spatialrefsys")
    _sub(srs, "wkt", scene.crs_wkt)
    if scene.crs_authid:
        _sub(srs, "authid", scene.crs_authid)


def _extent(parent: ET.Element, extent: Extent, tag: str = "extent") -> None:
    node = _sub(parent, tag)
    for key, value in zip(("xmin", "ymin", "xmax", "ymax"), extent, strict=True):
        _sub(node, key, repr(float(value)))


def layer_id(scene: str, kind: str) -> str:
    """A layer id QGIS keeps (over 10 characters, letters, digits and ``_`` only)."""
    return "geocam_" + re.sub(r"\W+", "_", f"{scene}_{kind}", flags=re.ASCII)


@dataclass(frozen=True, slots=True)
class _Layer:
    """A map layer and its layer-tree entry."""

    id: str
    name: str
    source: str
    provider: str
    checked: bool
    element: ET.Element


def _source(scene: SceneLayers, filename: str) -> str:
    folder = scene.folder.strip("/") or "."
    return f"./{filename}" if folder == "." else f"./{folder}/{filename}"


def _raster_layer(
    scene: SceneLayers,
    kind: str,
    name: str,
    filename: str,
    renderer: ET.Element,
    checked: bool,
    extent: Extent | None = None,
) -> _Layer:
    lid, source = layer_id(scene.name, kind), _source(scene, filename)
    layer = ET.Element(
        "maplayer",
        {
            "type": "raster",
            "styleCategories": "AllStyleCategories",
            "hasScaleBasedVisibilityFlag": "0",
            "minScale": "1e+08",
            "maxScale": "0",
        },
    )
    _extent(layer, extent or scene.extent)
    _sub(layer, "id", lid)
    _sub(layer, "datasource", source)
    _sub(layer, "layername", name)
    _srs(_sub(layer, "srs"), scene)
    _sub(layer, "provider", "gdal")
    layer.append(raster_pipe(renderer))
    _sub(layer, "blendMode", "0")
    return _Layer(lid, name, source, "gdal", checked, layer)


def _polygon_layer(scene: SceneLayers) -> _Layer:
    filename, table = scene.polygons
    lid, name = layer_id(scene.name, "salient"), f"{scene.name} salient polygons"
    source = f"{_source(scene, filename)}|layername={table}"
    layer = ET.Element(
        "maplayer",
        {
            "type": "vector",
            "geometry": "Polygon",
            "wkbType": "Polygon",
            "styleCategories": "AllStyleCategories",
            "hasScaleBasedVisibilityFlag": "0",
            "minScale": "1e+08",
            "maxScale": "0",
            "labelsEnabled": "0",
            "readOnly": "0",
        },
    )
    _extent(layer, scene.extent)
    _sub(layer, "id", lid)
    _sub(layer, "datasource", source)
    _sub(layer, "layername", name)
    _srs(_sub(layer, "srs"), scene)
    _sub(layer, "provider", "ogr", encoding="UTF-8")
    layer.append(salient_renderer(scene.classes, scene.colours))
    for tag in ("blendMode", "featureBlendMode"):
        _sub(layer, tag, "0")
    _sub(layer, "layerOpacity", "1")
    return _Layer(lid, name, source, "ogr", True, layer)


def _tree_layer(parent: ET.Element, layer: _Layer) -> None:
    _sub(
        parent,
        "layer-tree-layer",
        id=layer.id,
        name=layer.name,
        source=layer.source,
        providerKey=layer.provider,
        checked="Qt::Checked" if layer.checked else "Qt::Unchecked",
        expanded="0",
    )


def _scene_layers(scene: SceneLayers, tree: ET.Element) -> list[_Layer]:
    """The scene's layers, with its group appended to ``tree``."""
    polygons = _polygon_layer(scene)
    classes = _raster_layer(
        scene,
        "classes",
        f"{scene.name} classes",
        scene.class_map,
        classes_renderer(scene.classes, scene.colours, CLASSES_OPACITY),
        True,
    )
    heat = [
        _raster_layer(
            scene,
            f"heat_{i + 1:02d}_{name}",
            f"{scene.name} heat {name}",
            scene.cam,
            heat_renderer(i + 1),
            i + 1 == scene.heat_band,
        )
        for i, name in enumerate(scene.classes)
    ]
    group = _sub(tree, "layer-tree-group", name=scene.name, checked="Qt::Checked", expanded="1")
    _tree_layer(group, polygons)
    _tree_layer(group, classes)
    heat_group = ET.SubElement(
        group,
        "layer-tree-group",
        {
            "name": f"{scene.name} heat (CAM 0-1, one class at a time)",
            "checked": "Qt::Checked",
            "expanded": "1",
            "mutually-exclusive": "1",
            "mutually-exclusive-child": str(scene.heat_band - 1),
        },
    )
    for layer in heat:
        _tree_layer(heat_group, layer)
    layers = [polygons, classes, *heat]
    if scene.preview is not None:
        preview = _raster_layer(
            scene,
            "preview",
            f"{scene.name} preview",
            scene.preview,
            preview_renderer(),
            False,
            scene.preview_extent,
        )
        _tree_layer(group, preview)
        layers.append(preview)
    return layers


def _union(extents: Sequence[Extent]) -> Extent:
    return (
        min(e[0] for e in extents),
        min(e[1] for e in extents),
        max(e[2] for e in extents),
        max(e[3] for e in extents),
    )


def project_xml(scenes: Sequence[SceneLayers], title: str, created: str, abstract: str) -> str:
    """A QGIS project (``.qgs`` text) showing ``scenes``, in the first scene's CRS.

    Args:
        scenes: one entry per scene (a batch project holds several).
        title: project title.
        created: creation time, ISO 8601 without zone (``2017-02-16T10:00:00``), or empty.
        abstract: project description (provenance).

    Raises:
        ValueError: no scenes.
    """
    if not scenes:
        raise ValueError("a project needs at least one scene")
    first = scenes[0]
    root = ET.Element("qgis", version=QGIS_VERSION, projectname=title)
    _sub(root, "homePath", path="")
    _sub(root, "title", title)
    _srs(_sub(root, "projectCrs"), first)
    tree = _sub(root, "layer-tree-group")
    layers = [layer for scene in scenes for layer in _scene_layers(scene, tree)]
    projectlayers = _sub(root, "projectlayers")
    for layer in layers:
        projectlayers.append(layer.element)
    order = _sub(root, "layerorder")
    for layer in layers:
        _sub(order, "layer", id=layer.id)
    view = _union([s.extent for s in scenes if s.crs_wkt == first.crs_wkt])
    canvas = _sub(root, "mapcanvas", name="theMapCanvas", annotationsVisible="1")
    _extent(canvas, view)
    _sub(canvas, "rotation", "0")
    _srs(_sub(canvas, "destinationsrs"), first)
    settings = _sub(root, "ProjectViewSettings", UseProjectScales="0", rotation="0")
    default_view = _sub(
        settings,
        "DefaultViewExtent",
        xmin=repr(view[0]),
        ymin=repr(view[1]),
        xmax=repr(view[2]),
        ymax=repr(view[3]),
    )
    _srs(default_view, first)
    properties = _sub(root, "properties")
    _sub(_sub(properties, "Paths"), "Absolute", "false", type="bool")
    _sub(_sub(properties, "SpatialRefSys"), "ProjectionsEnabled", "1", type="int")
    metadata = _sub(root, "projectMetadata")
    _sub(metadata, "title", title)
    _sub(metadata, "abstract", abstract)
    _sub(metadata, "author", "geocam")
    if created:
        _sub(metadata, "creation", created)
    return to_text(root)
