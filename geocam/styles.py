"""QGIS styling: the renderers and ``.qml`` documents of a run's layers, built from the model's classes.

Pure XML building (``xml.etree.ElementTree``); the writers in :mod:`geocam.io.vectors` save the
documents and :mod:`geocam.project` puts the same renderers into the QGIS project. The format is
the one QGIS 3.22 LTR writes (``saveNamedStyle``), reduced to what it needs to read a style:

- ``classes.qml``: a paletted renderer listing only the model's classes, with their colours and
  names (GTiff pads a uint8 colour table to 256 entries, which QGIS would list otherwise);
- ``cam.qml``: a single-band pseudocolour renderer with the fixed range 0-1 (the heat is
  normalised per scene) and a continuous legend, on one class's band;
- ``salient.qml``: polygons categorised by class name in the class map's colours, with a
  translucent fill and a darker outline.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

#: The QGIS version written into the documents: the oldest LTR they are checked with.
QGIS_VERSION = "3.22.0"

#: Heat colour ramp (matplotlib's magma at ninths): (value in 0-1, RGB).
HEAT_RAMP: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.0, (0, 0, 4)),
    (0.125, (28, 16, 68)),
    (0.25, (79, 18, 123)),
    (0.375, (129, 37, 129)),
    (0.5, (181, 54, 122)),
    (0.625, (229, 80, 100)),
    (0.75, (251, 135, 97)),
    (0.875, (254, 194, 135)),
    (1.0, (252, 253, 191)),
)

#: Polygon fill opacity (0-255) and outline width in millimetres.
FILL_ALPHA = 90
OUTLINE_WIDTH_MM = 0.5
#: Outline colour = class colour times this factor (darker, so outlines show over the class map).
OUTLINE_SHADE = 0.55

_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"

RGB = tuple[int, int, int]


def hex_colour(rgb: RGB) -> str:
    """``#rrggbb`` of an RGB triple (0-255 each)."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _number(value: float) -> str:
    """A number as QGIS writes it: no trailing ``.0``."""
    return f"{value:g}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    child = ET.SubElement(parent, tag, attrib)
    if text is not None:
        child.text = text
    return child


def _min_max_origin(parent: ET.Element) -> None:
    """Fixed limits: QGIS keeps the stored range instead of computing one from statistics."""
    origin = _sub(parent, "minMaxOrigin")
    for tag, text in (
        ("limits", "None"),
        ("extent", "WholeRaster"),
        ("statAccuracy", "Estimated"),
        ("cumulativeCutLower", "0.02"),
        ("cumulativeCutUpper", "0.98"),
        ("stdDevFactor", "2"),
    ):
        _sub(origin, tag, text)


def classes_renderer(
    classes: Sequence[str], colours: Sequence[RGB], opacity: float = 1.0
) -> ET.Element:
    """A paletted renderer of band 1 with one entry per class (pixel value = class index).

    Args:
        classes: class names in index order.
        colours: RGB colour per class.
        opacity: layer opacity, 0-1.
    """
    renderer = ET.Element(
        "rasterrenderer",
        {
            "type": "paletted",
            "band": "1",
            "opacity": _number(opacity),
            "alphaBand": "-1",
            "nodataColor": "",
        },
    )
    _min_max_origin(renderer)
    palette = _sub(renderer, "colorPalette")
    for value, (name, rgb) in enumerate(zip(classes, colours, strict=True)):
        _sub(
            palette,
            "paletteEntry",
            value=str(value),
            color=hex_colour(rgb),
            alpha="255",
            label=name,
        )
    return renderer


def heat_renderer(band: int, opacity: float = 1.0) -> ET.Element:
    """A single-band pseudocolour renderer of ``band`` with the fixed range 0-1 (:data:`HEAT_RAMP`).

    Args:
        band: 1-based band of ``cam.tif`` (the class index + 1).
        opacity: layer opacity, 0-1.
    """
    renderer = ET.Element(
        "rasterrenderer",
        {
            "type": "singlebandpseudocolor",
            "band": str(band),
            "opacity": _number(opacity),
            "alphaBand": "-1",
            "nodataColor": "",
            "classificationMin": "0",
            "classificationMax": "1",
        },
    )
    _min_max_origin(renderer)
    shader = _sub(
        _sub(renderer, "rastershader"),
        "colorrampshader",
        colorRampType="INTERPOLATED",
        classificationMode="1",
        clip="0",
        minimumValue="0",
        maximumValue="1",
        labelPrecision="2",
    )
    ramp = _sub(shader, "colorramp", type="gradient", name="[source]")
    options = _sub(ramp, "Option", type="Map")
    first, last = HEAT_RAMP[0][1], HEAT_RAMP[-1][1]
    stops = ":".join(f"{_number(v)};{r},{g},{b},255" for v, (r, g, b) in HEAT_RAMP[1:-1])
    for key, text in (
        ("color1", "{},{},{},255".format(*first)),
        ("color2", "{},{},{},255".format(*last)),
        ("discrete", "0"),
        ("rampType", "gradient"),
        ("stops", stops),
    ):
        _sub(options, "Option", type="QString", name=key, value=text)
    for value, rgb in HEAT_RAMP:
        label = _number(value)
        _sub(shader, "item", value=label, color=hex_colour(rgb), alpha="255", label=label)
    _sub(
        shader,
        "rampLegendSettings",
        useContinuousLegend="1",
        orientation="2",
        direction="0",
        prefix="",
        suffix="",
        minimumLabel="0",
        maximumLabel="1 (scene max)",
    )
    return renderer


def preview_renderer() -> ET.Element:
    """An RGB renderer of bands 1-3 without contrast stretch (the preview holds display colours)."""
    return ET.Element(
        "rasterrenderer",
        {
            "type": "multibandcolor",
            "redBand": "1",
            "greenBand": "2",
            "blueBand": "3",
            "opacity": "1",
            "alphaBand": "-1",
            "nodataColor": "",
        },
    )


def raster_pipe(renderer: ET.Element, resampling: str = "nearestNeighbour") -> ET.Element:
    """The ``<pipe>`` of a raster layer around ``renderer``.

    Args:
        renderer: a ``<rasterrenderer>``.
        resampling: QGIS's zoomed-in and zoomed-out resampling (``nearestNeighbour``,
            ``bilinear``, ``cubic``).
    """
    pipe = ET.Element("pipe")
    enabled = "false" if resampling == "nearestNeighbour" else "true"
    _sub(
        _sub(pipe, "provider"),
        "resampling",
        enabled=enabled,
        maxOversampling="2",
        zoomedInResamplingMethod=resampling,
        zoomedOutResamplingMethod=resampling,
    )
    pipe.append(renderer)
    _sub(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    _sub(
        pipe,
        "huesaturation",
        saturation="0",
        grayscaleMode="0",
        invertColors="0",
        colorizeOn="0",
        colorizeRed="255",
        colorizeGreen="128",
        colorizeBlue="128",
        colorizeStrength="100",
    )
    _sub(pipe, "rasterresampler", maxOversampling="2")
    _sub(pipe, "resamplingStage", "resamplingFilter")
    return pipe


def _fill_symbol(parent: ET.Element, name: str, rgb: RGB) -> None:
    """A simple fill: the class colour translucent, outlined in a darker shade of it."""
    symbol = _sub(
        parent, "symbol", type="fill", name=name, alpha="1", clip_to_extent="1", force_rhr="0"
    )
    attrib = {"class": "SimpleFill", "enabled": "1", "locked": "0", "pass": "0"}
    layer = ET.SubElement(symbol, "layer", attrib)
    outline = tuple(round(c * OUTLINE_SHADE) for c in rgb)
    props = {
        "color": "{},{},{},{}".format(*rgb, FILL_ALPHA),
        "style": "solid",
        "outline_color": "{},{},{},255".format(*outline),
        "outline_style": "solid",
        "outline_width": _number(OUTLINE_WIDTH_MM),
        "outline_width_unit": "MM",
        "joinstyle": "bevel",
        "offset": "0,0",
        "offset_unit": "MM",
    }
    options = _sub(layer, "Option", type="Map")
    for key, value in props.items():  # QGIS >= 3.16 reads the Option map ...
        _sub(options, "Option", type="QString", name=key, value=value)
    for key, value in props.items():  # ... older QGIS the prop list; QGIS writes both
        _sub(layer, "prop", k=key, v=value)


def salient_renderer(
    classes: Sequence[str], colours: Sequence[RGB], field: str = "class"
) -> ET.Element:
    """A renderer categorising polygons by ``field`` (the class name), one category per class.

    Args:
        classes: class names in index order (the legend's order).
        colours: RGB colour per class.
        field: attribute holding the class name.
    """
    renderer = ET.Element(
        "renderer-v2",
        {
            "type": "categorizedSymbol",
            "attr": field,
            "forceraster": "0",
            "symbollevels": "0",
            "enableorderby": "0",
            "referencescale": "-1",
        },
    )
    categories = _sub(renderer, "categories")
    symbols = _sub(renderer, "symbols")
    for i, (name, rgb) in enumerate(zip(classes, colours, strict=True)):
        _sub(categories, "category", value=name, label=name, symbol=str(i), render="true")
        _fill_symbol(symbols, str(i), rgb)
    return renderer


def _document(**attrib: str) -> ET.Element:
    return ET.Element(
        "qgis",
        {
            "version": QGIS_VERSION,
            "styleCategories": "AllStyleCategories",
            "hasScaleBasedVisibilityFlag": "0",
            "minScale": "1e+08",
            "maxScale": "0",
            **attrib,
        },
    )


def to_text(root: ET.Element) -> str:
    """Serialise a QGIS document (``.qml`` or ``.qgs``) with QGIS's doctype line."""
    ET.indent(root, space="  ")
    return _DOCTYPE + ET.tostring(root, encoding="unicode") + "\n"


def raster_qml(renderer: ET.Element, resampling: str = "nearestNeighbour") -> str:
    """A raster layer style (``.qml``) holding ``renderer``."""
    root = _document()
    root.append(raster_pipe(renderer, resampling))
    _sub(root, "blendMode", "0")
    return to_text(root)


def vector_qml(renderer: ET.Element) -> str:
    """A vector layer style (``.qml``) holding ``renderer``."""
    root = _document(labelsEnabled="0", readOnly="0")
    root.append(renderer)
    for tag in ("blendMode", "featureBlendMode"):
        _sub(root, tag, "0")
    _sub(root, "layerOpacity", "1")
    return to_text(root)


def classes_qml(classes: Sequence[str], colours: Sequence[RGB]) -> str:
    """``classes.qml``: the class map's legend, exactly the model's classes."""
    return raster_qml(classes_renderer(classes, colours))


def cam_qml(band: int) -> str:
    """``cam.qml``: heat 0-1 of one class's band (1-based); the band is one choice away in QGIS."""
    return raster_qml(heat_renderer(band))


def salient_qml(classes: Sequence[str], colours: Sequence[RGB]) -> str:
    """``salient.qml``: polygons categorised by class in the class map's colours."""
    return vector_qml(salient_renderer(classes, colours))
