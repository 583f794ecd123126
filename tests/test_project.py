"""The QGIS project: relative paths, ids QGIS keeps, layers grouped and ordered per scene."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from geocam.colours import class_colours
from geocam.project import SceneLayers, layer_id, project_xml

CLASSES = ("Water", "Forest")


def scene(name: str = "havel", folder: str = ".", preview: bool = True) -> SceneLayers:
    return SceneLayers(
        name=name, folder=folder, crs_wkt="PROJCS[...]", crs_authid="EPSG:32633",
        extent=(0.0, 0.0, 100.0, 50.0), classes=CLASSES, colours=tuple(class_colours(CLASSES)),
        heat_band=2, preview="preview.png" if preview else None,
        preview_extent=(0.0, 0.0, 100.0, 60.0) if preview else None,
    )  # fmt: skip


def parse(text: str) -> ET.Element:
    return ET.fromstring(text.split("\n", 1)[1])


def test_one_scene_project() -> None:
    root = parse(project_xml([scene()], "t", "2017-02-16T10:00:00", "abstract"))
    assert root.findtext("properties/Paths/Absolute") == "false"
    assert root.findtext("properties/SpatialRefSys/ProjectionsEnabled") == "1"
    assert root.findtext("projectCrs/spatialrefsys/authid") == "EPSG:32633"
    layers = {m.findtext("id"): m for m in root.iter("maplayer")}
    assert all(len(i or "") > 10 for i in layers)  # QGIS 3.22 replaces ids of <= 10 chars
    sources = sorted(m.findtext("datasource") or "" for m in layers.values())
    assert sources == sorted(
        ["./salient.gpkg|layername=salient", "./classes.tif", "./cam.tif", "./cam.tif",
         "./preview.png"]
    )  # fmt: skip
    group = root.find("layer-tree-group/layer-tree-group")
    assert group is not None and group.attrib["name"] == "havel"
    kids = [(k.tag, k.attrib["name"]) for k in group]
    assert kids == [
        ("layer-tree-layer", "havel salient polygons"),
        ("layer-tree-layer", "havel classes"),
        ("layer-tree-group", "havel heat (CAM 0-1, one class at a time)"),
        ("layer-tree-layer", "havel preview"),
    ]
    heat = group[2]
    assert heat.attrib["mutually-exclusive"] == "1"
    shown = [(k.attrib["name"], k.attrib["checked"]) for k in heat]
    assert shown == [("havel heat Water", "Qt::Unchecked"), ("havel heat Forest", "Qt::Checked")]
    bands = [layers[k.attrib["id"]].find("pipe/rasterrenderer").get("band") for k in heat]  # type: ignore[union-attr]
    assert bands == ["1", "2"]
    assert group[3].attrib["checked"] == "Qt::Unchecked"
    tree_ids = {n.attrib["id"] for n in root.iter("layer-tree-layer")}
    assert tree_ids == set(layers)


def test_batch_project_has_a_group_per_scene_with_paths_into_its_folder() -> None:
    text = project_xml([scene("a", "a"), scene("b", "b", preview=False)], "batch", "", "")
    root = parse(text)
    groups = [g.attrib["name"] for g in root.findall("layer-tree-group/layer-tree-group")]
    assert groups == ["a", "b"]
    assert "./a/cam.tif" in text and "./b/salient.gpkg|layername=salient" in text
    assert "./b/preview.png" not in text
    ids = [m.findtext("id") for m in root.iter("maplayer")]
    assert len(ids) == len(set(ids))


def test_layer_ids_are_plain_and_long_enough() -> None:
    assert layer_id("S2 scène/1", "heat_01_Forest") == "geocam_S2_sc_ne_1_heat_01_Forest"
    with pytest.raises(ValueError, match="at least one scene"):
        project_xml([], "t", "", "")
