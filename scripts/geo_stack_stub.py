"""Run a geocam command where TorchGeo's geospatial I/O stack is not installed (GPU hosts).

TorchGeo imports rasterio, pyproj, shapely, geopandas and pyogrio at module level, but training
on the EuroSAT RGB JPEGs (``NonGeoClassificationDataset`` + ``tasks.Classification``) never calls
them. The GPU hosts geocam trains on have no package index and carry at most 64 MiB, which those
wheels alone exceed; this wrapper stands them in with inert modules so the unchanged training
code runs there. Anything that really uses them fails loudly (the stand-ins are MagicMocks and
return mocks, which cannot be written as rasters). Never use it for scene runs.

Usage: python scripts/geo_stack_stub.py train ...   (the arguments of ``geocam``)
"""

import importlib.abc
import importlib.machinery
import sys
import types
from unittest import mock

STUBBED = ("rasterio", "affine", "pyproj", "shapely", "geopandas", "pyogrio", "fiona", "lightly")


class _StubLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = mock.MagicMock(name=spec.name)
        module.__path__ = []
        module.__spec__ = spec
        module.__name__ = spec.name
        return module  # type: ignore[no-any-return]

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class _StubFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        name: str,
        path: object = None,
        target: object = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if name.split(".")[0] in STUBBED:
            return importlib.machinery.ModuleSpec(name, _StubLoader(), is_package=True)
        return None


def main() -> None:
    """Install the stand-ins, then hand over to geocam's CLI."""
    sys.meta_path.insert(0, _StubFinder())
    from geocam.cli import main as geocam_main

    sys.argv[0] = "geocam"
    geocam_main()


if __name__ == "__main__":
    main()
