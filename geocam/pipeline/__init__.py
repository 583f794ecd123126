"""run_scene(): the one place that chains the stages, block by block, with bounded memory.

- :mod:`.plan`: every check before any output exists (scene, bands, radiometry, grid, limits).
- :mod:`.model_pass`: pass 1, windows scored and summed into the scene's lattice.
- :mod:`.raster_pass`: pass 2, per-pixel heat, classes and polygon pieces block by block.
- :mod:`.write`: the COGs, vectors, preview and QGIS files; :mod:`.record`: run.json.
- :mod:`.run`: the run itself, committed at once; :mod:`.executor`: its local threads.
"""

from .job import Progress, SceneOutputs
from .names import OUTPUT_NAMES
from .plan import GridPlan, iter_scene_inputs, load_run_model, plan_grid, plan_run, plan_scenes
from .record import peak_rss_mib
from .run import iter_run_scene, run_scene
from .write import write_batch_project

__all__ = (
    "OUTPUT_NAMES",
    "GridPlan",
    "Progress",
    "SceneOutputs",
    "iter_run_scene",
    "iter_scene_inputs",
    "load_run_model",
    "peak_rss_mib",
    "plan_grid",
    "plan_run",
    "plan_scenes",
    "run_scene",
    "write_batch_project",
)
