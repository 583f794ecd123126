"""Open a geocam run's folder in (headless) QGIS and check it; run with Debian's /usr/bin/python3.

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tests/qgis_open.py RUN_DIR RENDER_DIR
    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tests/qgis_open.py --batch BATCH_DIR SCENE...

Checks, with PyQGIS itself (no geocam import: the system python has none of its dependencies):
every layer is valid and opens with its style (``X.qml`` beside ``X.tif``/``X.gpkg``); the class
legend holds exactly the model's classes, in the colour table's colours; the heat is a 0-1
pseudocolour; the polygons are categorised by class, also from the GeoPackage alone (its
``layer_styles`` table); GeoJSON feature ids equal the GeoPackage fids; the project loads with
every layer valid, grouped and ordered. Renders every layer and the project to RENDER_DIR/*.png
and checks what the images show. Prints one JSON line (``problems``, ``renders``); exit status 1
if there is a problem.
"""

import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (
    QgsApplication,
    QgsLayerTreeGroup,
    QgsLayerTreeLayer,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

PROBLEMS = []
KEEP = []  # layers stay referenced until exit (PyQGIS crashes on deleted providers)


def problem(msg):
    PROBLEMS.append(msg)


def colours_of(image, step=4):
    """The set of opaque RGB colours in an image (every ``step``-th pixel)."""
    out = set()
    for y in range(0, image.height(), step):
        for x in range(0, image.width(), step):
            c = image.pixelColor(x, y)
            if c.alpha() == 255:
                out.add((c.red(), c.green(), c.blue()))
    return out


def render(layers, crs, extent, path, width_px=800):
    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(crs)
    settings.setExtent(extent)
    height_px = max(64, round(width_px * extent.height() / extent.width()))
    settings.setOutputSize(QSize(width_px, height_px))
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    for err in job.errors():
        problem(f"{path}: render error {err.message}")
    image = job.renderedImage()
    if not image.save(path, "PNG"):
        problem(f"{path}: not written")
    return image


def raster(path, name):
    layer = QgsRasterLayer(path, name, "gdal")
    KEEP.append(layer)
    if not layer.isValid():
        problem(f"{name}: invalid raster layer")
    return layer


def vector(uri, name):
    layer = QgsVectorLayer(uri, name, "ogr")
    KEEP.append(layer)
    if not layer.isValid():
        problem(f"{name}: invalid vector layer")
    return layer


def check_classes(layer, classes, label):
    renderer = layer.renderer()
    if renderer is None or renderer.type() != "paletted":
        problem(f"{label}: renderer {renderer and renderer.type()}, not paletted")
        return []
    legend = [(int(c.value), c.label) for c in renderer.classes()]
    if legend != list(enumerate(classes)):
        problem(
            f"{label}: legend of {len(legend)} entries {legend[:12]} is not the model's classes"
        )
    table = {int(item.value): item.color.name() for item in layer.dataProvider().colorTable(1)}
    colours = [c.color.name() for c in renderer.classes()]
    if colours != [table.get(i) for i in range(len(classes))]:
        problem(f"{label}: legend colours {colours} differ from the colour table")
    return [c.color for c in renderer.classes()]


def check_heat(layer, band, label):
    renderer = layer.renderer()
    if renderer is None or renderer.type() != "singlebandpseudocolor":
        problem(f"{label}: renderer {renderer and renderer.type()}, not singlebandpseudocolor")
        return
    if renderer.band() != band:
        problem(f"{label}: band {renderer.band()}, expected {band}")
    if (renderer.classificationMin(), renderer.classificationMax()) != (0.0, 1.0):
        problem(
            f"{label}: range {renderer.classificationMin()}..{renderer.classificationMax()}, "
            "expected 0..1"
        )
    items = renderer.shader().rasterShaderFunction().colorRampItemList()
    if len(items) < 2 or items[0].value != 0.0 or items[-1].value != 1.0:
        problem(f"{label}: colour ramp items {[i.value for i in items]} do not span 0..1")


def check_polygons(layer, classes, label):
    renderer = layer.renderer()
    if renderer is None or renderer.type() != "categorizedSymbol":
        problem(f"{label}: renderer {renderer and renderer.type()}, not categorised")
        return
    if renderer.classAttribute() != "class":
        problem(f"{label}: categorised by {renderer.classAttribute()!r}, not 'class'")
    values = [c.value() for c in renderer.categories()]
    if values != list(classes):
        problem(f"{label}: categories {values} are not the model's classes")


def check_project(path, classes, heat_band, crs):
    project = QgsProject()
    KEEP.append(project)
    if not project.read(path):
        problem(f"project: read failed: {project.error()}")
        return None
    if project.readBoolEntry("Paths", "/Absolute", False)[0]:
        problem("project: absolute paths")
    if project.crs().authid() != crs.authid():
        problem(f"project: CRS {project.crs().authid()}, expected {crs.authid()}")
    layers = project.mapLayers()
    for layer in layers.values():
        if not layer.isValid():
            problem(f"project: layer {layer.name()} ({layer.source()}) invalid")
    for node in project.layerTreeRoot().findLayers():
        if node.layer() is None:
            problem(f"project: layer tree entry {node.name()} matches no layer")
    groups = [n for n in project.layerTreeRoot().children() if isinstance(n, QgsLayerTreeGroup)]
    if len(groups) != 1:
        problem(f"project: {len(groups)} top-level groups, expected the scene's one")
        return project
    scene = groups[0].name()
    kids = groups[0].children()
    kinds = [
        "group"
        if isinstance(k, QgsLayerTreeGroup)
        else k.layer().renderer().type()
        if isinstance(k, QgsLayerTreeLayer) and k.layer() is not None
        else "?"
        for k in kids
    ]
    if kinds[:3] != ["categorizedSymbol", "paletted", "group"]:
        problem(f"project: order {kinds}, expected polygons, class map, heat group (top down)")
        return project
    names = [k.name() for k in kids]
    if not all(n.startswith(scene + " ") for n in names):
        problem(f"project: layer names {names} not named after the scene {scene!r}")
    check_polygons(kids[0].layer(), classes, "project polygons")
    check_classes(kids[1].layer(), classes, "project classes")
    heat = kids[2]
    if not heat.isMutuallyExclusive():
        problem("project: heat group is not mutually exclusive")
    heat_layers = heat.findLayers()
    if [n.name() for n in heat_layers] != [f"{scene} heat {c}" for c in classes]:
        problem(f"project: heat layers {[n.name() for n in heat_layers]}")
    for i, node in enumerate(heat_layers):
        check_heat(node.layer(), i + 1, f"project heat {classes[i]}")
    ticked = [i + 1 for i, n in enumerate(heat_layers) if n.isVisible()]
    if ticked != [heat_band]:
        problem(f"project: heat bands shown {ticked}, expected [{heat_band}]")
    return project


def check_batch(path, scenes):
    """A batch's project: every layer valid, one group per scene, in the order given."""
    project = QgsProject()
    KEEP.append(project)
    if not project.read(path):
        problem(f"batch project: read failed: {project.error()}")
        return
    for layer in project.mapLayers().values():
        if not layer.isValid():
            problem(f"batch project: layer {layer.name()} ({layer.source()}) invalid")
    for node in project.layerTreeRoot().findLayers():
        if node.layer() is None:
            problem(f"batch project: layer tree entry {node.name()} matches no layer")
    groups = [n.name() for n in project.layerTreeRoot().children()]
    if groups != scenes:
        problem(f"batch project: groups {groups}, expected {scenes}")


def main_batch(batch_dir, scenes):
    app = QgsApplication([], False, tempfile.mkdtemp(prefix="qgis_open_"))
    app.initQgis()
    KEEP.append(app)
    check_batch(os.path.join(batch_dir, "project.qgs"), scenes)
    sys.stdout.write(json.dumps({"problems": PROBLEMS}) + "\n")
    sys.stdout.flush()
    os._exit(1 if PROBLEMS else 0)


def main(run_dir, render_dir):
    os.makedirs(render_dir, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="qgis_open_")
    app = QgsApplication([], False, profile)
    app.initQgis()
    KEEP.append(app)
    with open(os.path.join(run_dir, "run.json")) as f:
        run = json.load(f)
    classes = run["model"]["classes"]
    renders = {}
    # Work on a copy: QGIS writes statistics (.aux.xml) beside rasters it renders.
    work = os.path.join(profile, "run")
    shutil.copytree(run_dir, work)
    join = lambda name: os.path.join(work, name)

    classes_layer = raster(join("classes.tif"), "classes")
    colours = check_classes(classes_layer, classes, "classes.tif")
    cam = raster(join("cam.tif"), "cam")
    heat_band = 1
    if os.path.exists(join("cam.qml")):
        with open(join("cam.qml")) as f:
            heat_band = int(f.read().split('type="singlebandpseudocolor" band="')[1].split('"')[0])
    else:
        problem("cam.qml missing")
    check_heat(cam, heat_band, "cam.tif")
    gpkg = vector(join("salient.gpkg") + "|layername=salient", "salient.gpkg")
    geojson = vector(join("salient.geojson"), "salient.geojson")
    for layer in (gpkg, geojson):
        check_polygons(layer, classes, layer.name())
        if layer.featureCount() != run["polygons"]["total"]:
            problem(f"{layer.name()}: {layer.featureCount()} features, run.json says otherwise")
    gpkg_ids = sorted((f.id(), f["class"]) for f in gpkg.getFeatures())
    json_ids = sorted((f.id(), f["class"]) for f in geojson.getFeatures())
    if gpkg_ids != json_ids:
        problem("GeoJSON feature ids and classes differ from the GeoPackage's fids")
    alone = os.path.join(profile, "alone")
    os.makedirs(alone)
    shutil.copy(join("salient.gpkg"), alone)
    check_polygons(
        vector(os.path.join(alone, "salient.gpkg") + "|layername=salient", "gpkg alone"),
        classes,
        "salient.gpkg without salient.qml",
    )

    extent = cam.extent()
    images = {
        "classes": render(
            [classes_layer], cam.crs(), extent, os.path.join(render_dir, "classes.png")
        ),
        "cam": render([cam], cam.crs(), extent, os.path.join(render_dir, "cam.png")),
        "salient": render([gpkg], cam.crs(), extent, os.path.join(render_dir, "salient.png")),
        "geojson": render([geojson], cam.crs(), extent, os.path.join(render_dir, "geojson.png")),
    }
    project = check_project(join("project.qgs"), classes, heat_band, cam.crs())
    if project is not None:
        shown = project.layerTreeRoot().checkedLayers()
        images["project"] = render(
            shown, project.crs(), extent, os.path.join(render_dir, "project.png")
        )
    found = {name: colours_of(image) for name, image in images.items()}
    palette = {(c.red(), c.green(), c.blue()) for c in colours} | {(255, 255, 255)}
    if not found["classes"] or not found["classes"] <= palette:
        problem(f"classes render: colours {sorted(found['classes'] - palette)[:5]} not classes")
    if len(found["cam"]) < 16:
        problem(f"cam render: {len(found['cam'])} colours, not a colour ramp")
    if all(r == g == b for r, g, b in found["cam"]):
        problem("cam render is grey, not the pseudocolour ramp")
    for name in ("salient", "geojson"):
        if len(found[name] - {(255, 255, 255)}) < 2:
            problem(f"{name} render: no polygons drawn")
    if "project" in found and len(found["project"]) < len(found["classes"]):
        problem("project render: fewer colours than the class map alone")
    renders = {name: len(cols) for name, cols in found.items()}
    sys.stdout.write(
        json.dumps({"problems": PROBLEMS, "renders": renders, "heat_band": heat_band}) + "\n"
    )
    sys.stdout.flush()
    shutil.rmtree(profile, ignore_errors=True)
    os._exit(1 if PROBLEMS else 0)  # PyQGIS teardown with live layers can crash


if __name__ == "__main__":
    if sys.argv[1] == "--batch":  # --batch BATCH_DIR SCENE...
        main_batch(sys.argv[2], sys.argv[3:])
    main(sys.argv[1], sys.argv[2])
