"""The file names of one scene's outputs."""

#: Output file names of one scene.
OUTPUT_NAMES: dict[str, str] = {
    "cam": "cam.tif",
    "classes": "classes.tif",
    "classes_aux": "classes.tif.aux.xml",
    "gpkg": "salient.gpkg",
    "geojson": "salient.geojson",
    "preview": "preview.png",
    "preview_world": "preview.pgw",
    "preview_aux": "preview.png.aux.xml",
    "cam_style": "cam.qml",
    "classes_style": "classes.qml",
    "salient_style": "salient.qml",
    "project": "project.qgs",
    "run": "run.json",
}
