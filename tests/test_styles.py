"""QGIS styles: documents QGIS 3.22 reads, built from the model's classes and colours."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from geocam.colours import class_colours
from geocam.model import EUROSAT_CLASSES
from geocam.styles import HEAT_RAMP, cam_qml, classes_qml, hex_colour, salient_qml

CLASSES = ("Water", "Forest & Wood", "Urban")


def parse(text: str) -> ET.Element:
    assert text.startswith("<!DOCTYPE qgis")
    return ET.fromstring(text.split("\n", 1)[1])


@pytest.mark.parametrize("classes", [CLASSES, tuple(EUROSAT_CLASSES)])
def test_classes_legend_is_exactly_the_models_classes(classes: tuple[str, ...]) -> None:
    colours = class_colours(classes)
    root = parse(classes_qml(classes, colours))
    renderer = root.find("pipe/rasterrenderer")
    assert renderer is not None and renderer.get("type") == "paletted"
    entries = [(e.get("value"), e.get("label"), e.get("color")) for e in root.iter("paletteEntry")]
    expected = [
        (str(i), n, hex_colour(c)) for i, (n, c) in enumerate(zip(classes, colours, strict=True))
    ]
    assert entries == expected


def test_heat_is_a_fixed_0_to_1_pseudocolour_of_one_band() -> None:
    root = parse(cam_qml(band=3))
    renderer = root.find("pipe/rasterrenderer")
    assert renderer is not None
    assert renderer.attrib["type"] == "singlebandpseudocolor" and renderer.attrib["band"] == "3"
    assert (renderer.attrib["classificationMin"], renderer.attrib["classificationMax"]) == (
        "0",
        "1",
    )
    assert root.findtext("pipe/rasterrenderer/minMaxOrigin/limits") == "None"  # no stretch
    items = [float(i.attrib["value"]) for i in root.iter("item")]
    assert items == [v for v, _ in HEAT_RAMP] and items[0] == 0 and items[-1] == 1
    legend = root.find(".//rampLegendSettings")
    assert legend is not None and legend.attrib["useContinuousLegend"] == "1"


def test_polygons_are_categorised_by_class_in_the_class_colours() -> None:
    colours = class_colours(CLASSES)
    root = parse(salient_qml(CLASSES, colours))
    renderer = root.find("renderer-v2")
    assert renderer is not None and renderer.attrib["type"] == "categorizedSymbol"
    assert renderer.attrib["attr"] == "class"
    cats = [(c.attrib["value"], c.attrib["symbol"]) for c in renderer.iter("category")]
    assert cats == [(n, str(i)) for i, n in enumerate(CLASSES)]
    for i, symbol in enumerate(renderer.iter("symbol")):
        props = {
            o.attrib["name"]: o.attrib["value"] for o in symbol.iter("Option") if "name" in o.attrib
        }
        r, g, b, alpha = (int(v) for v in props["color"].split(","))
        assert (r, g, b) == colours[i] and 0 < alpha < 255  # translucent fill
        assert props["outline_style"] == "solid" and float(props["outline_width"]) > 0
