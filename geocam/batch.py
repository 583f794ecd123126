"""Resumable batches: the manifest of a batch's output folder, and one scene run of a batch.

The manifest (``geocam-batch.json`` in ``--out``) holds, per scene: the input identity (each
file's resolved path, size and modification time), the model's SHA-256, a hash of the settings
that shape the outputs, the outputs' SHA-256, sizes and modification times, and a status. A
scene is *complete and current* when its entry is ``done``, its inputs, model and settings are
those of the new run, and every output is still on disk with the recorded size and
modification time; a rerun of the same command skips such scenes. The manifest is written by
one process only (the CLI, the Dask client), under a temporary name and renamed, after each
scene: a batch killed at any point leaves a manifest that names only finished scenes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .cam import Engine
from .config import SceneConfig, to_mapping
from .model import GeocamModel, file_sha256
from .pipeline import OUTPUT_NAMES, Progress, SceneOutputs, iter_run_scene, peak_rss_mib
from .project import SceneLayers
from .provenance import geocam_version
from .runtime import NO_HOOKS, StageHooks

#: The manifest's file name in the batch's output folder.
MANIFEST_NAME = "geocam-batch.json"
#: The manifest's format tag.
MANIFEST_FORMAT = "geocam.batch/1"
#: Settings that change how fast a run goes, not which analysis it is: changing them does not
#: make a scene out of date (``--force`` redoes it).
EXECUTION_FIELDS = ("threads", "batch_size", "device")


@dataclass(frozen=True, slots=True)
class SceneJob:
    """One scene of a batch.

    Attributes:
        name: scene name (its output folder's name in a batch of several).
        paths: the scene's files.
        out_dir: its output folder.
    """

    name: str
    paths: tuple[Path, ...]
    out_dir: Path


@dataclass(frozen=True, slots=True)
class SceneRecord:
    """A finished scene run, as the process that ran it reports it.

    Attributes:
        job: the scene.
        outputs: what the run wrote.
        files: output file name to ``{"sha256", "bytes", "mtime_ns"}``.
        pid: the process that ran it.
        peak_rss_mib: that process's peak resident memory after the run, in MiB.
        model_loads: models that process had loaded by then (1 when a worker loads it once).
    """

    job: SceneJob
    outputs: SceneOutputs
    files: dict[str, dict[str, Any]]
    pid: int
    peak_rss_mib: float | None
    model_loads: int = 1


def scene_jobs(
    scenes: Sequence[tuple[str, tuple[Path, ...]]], folders: Sequence[Path]
) -> list[SceneJob]:
    """The jobs of a batch.

    Args:
        scenes: (name, files) per scene, as :func:`geocam.pipeline.iter_scene_inputs` gives them.
        folders: each scene's output folder (:func:`geocam.pipeline.plan_scenes`: one scene in
            ``--out``, several in unique ``--out/NAME`` folders).
    """
    return [
        SceneJob(f.name if len(scenes) > 1 else n, tuple(p), f)
        for (n, p), f in zip(scenes, folders, strict=True)
    ]


def input_identity(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Each file's resolved path, size (bytes) and modification time (ns since the epoch)."""
    out = []
    for path in paths:
        st = Path(path).stat()
        out.append(
            {"path": str(Path(path).resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
        )
    return out


def config_sha256(config: SceneConfig) -> str:
    """SHA-256 of the settings that shape a run's outputs, and of geocam's version.

    Args:
        config: the run's settings; :data:`EXECUTION_FIELDS` are left out.
    """
    shaping = {k: v for k, v in to_mapping(config).items() if k not in EXECUTION_FIELDS}
    text = json.dumps({"geocam": geocam_version(), "config": shaping}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def output_files(outputs: SceneOutputs) -> dict[str, dict[str, Any]]:
    """Output file name to its SHA-256, size (bytes) and modification time (ns)."""
    out = {}
    for path in sorted(outputs.files.values()):
        st = path.stat()
        out[path.name] = {
            "sha256": file_sha256(path),
            "bytes": st.st_size,
            "mtime_ns": st.st_mtime_ns,
        }
    return out


def run_scene_job(
    job: SceneJob,
    model: GeocamModel,
    config: SceneConfig,
    on_event: Callable[[Progress], None] | None = None,
    model_loads: int = 1,
    wrap_engine: Callable[[Engine], Engine] | None = None,
    guard: Callable[[], AbstractContextManager[object]] = nullcontext,
    hooks: StageHooks = NO_HOOKS,
) -> SceneRecord:
    """Run one scene of a batch: clear what a killed run left, run it, hash its outputs.

    Args:
        job: the scene.
        model: the loaded model.
        config: run settings.
        on_event: called with each progress event (the caller's progress bars).
        model_loads: reported in the record (models the calling process has loaded).
        wrap_engine: passed to :func:`geocam.pipeline.iter_run_scene`.
        guard: a context around each step of the run (the CLI's holds signals until the step
            is done); the run's cleanup runs on every exit.
        hooks: the process owner's tuning (see :class:`geocam.runtime.StageHooks`).
    """
    gen = iter_run_scene(job.paths, model, job.out_dir, config, job.name, wrap_engine, hooks)
    try:
        while True:
            try:
                with guard():
                    event = next(gen)
            except StopIteration as stop:
                outputs: SceneOutputs = stop.value
                break
            if on_event is not None:
                on_event(event)
    finally:
        gen.close()
    return SceneRecord(
        job, outputs, output_files(outputs), os.getpid(), peak_rss_mib(), model_loads
    )


def _layers_from(data: Mapping[str, Any]) -> SceneLayers:
    def tup(v: Any) -> Any:  # noqa: ANN401 - JSON arrays back to the tuples they were
        return tuple(tup(x) for x in v) if isinstance(v, list) else v

    return SceneLayers(**{k: tup(v) for k, v in data.items()})


@dataclass(slots=True)
class Manifest:
    """A batch's manifest: scene name to its entry (see the module docstring).

    Attributes:
        path: the manifest file.
        model_sha256: SHA-256 of the model file of this run.
        config_sha256: :func:`config_sha256` of this run's settings.
        scenes: scene name to entry (plain JSON data).
    """

    path: Path
    model_sha256: str
    config_sha256: str
    scenes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, out_dir: Path, model_sha256: str, config: SceneConfig) -> Manifest:
        """The manifest of ``out_dir`` (empty if there is none or it cannot be read).

        Args:
            out_dir: the batch's output folder.
            model_sha256: SHA-256 of this run's model file.
            config: this run's settings.
        """
        path = Path(out_dir) / MANIFEST_NAME
        scenes: dict[str, dict[str, Any]] = {}
        try:
            data = json.loads(path.read_text())
            if data.get("format") == MANIFEST_FORMAT:
                scenes = dict(data["scenes"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return cls(path, model_sha256, config_sha256(config), scenes)

    def is_current(self, job: SceneJob) -> bool:
        """Whether ``job`` is done with these inputs, model and settings, its outputs intact."""
        entry = self.scenes.get(job.name)
        if not entry or entry.get("status") != "done":
            return False
        try:
            if entry.get("inputs") != input_identity(job.paths):
                return False
        except OSError:
            return False
        if (entry.get("model_sha256"), entry.get("config_sha256")) != (
            self.model_sha256,
            self.config_sha256,
        ):
            return False
        if entry.get("folder") != self._folder(job):
            return False
        for name, meta in entry.get("outputs", {}).items():
            try:
                st = (job.out_dir / name).stat()
            except OSError:
                return False
            if (st.st_size, st.st_mtime_ns) != (meta["bytes"], meta["mtime_ns"]):
                return False
        return bool(entry.get("outputs"))

    def record(self, rec: SceneRecord) -> None:
        """Mark a scene done with its outputs, and write the manifest."""
        out = rec.outputs
        self.scenes[rec.job.name] = {
            "status": "done",
            "folder": self._folder(rec.job),
            "inputs": input_identity(rec.job.paths),
            "model_sha256": self.model_sha256,
            "config_sha256": self.config_sha256,
            "outputs": rec.files,
            "windows": out.windows,
            "windows_skipped": out.windows_skipped,
            "polygons": out.polygons,
            "seconds": round(out.seconds, 3),
            "model_seconds": round(out.model_seconds, 3),
            "layers": None if out.layers is None else asdict(out.layers),
            "process": {
                "pid": rec.pid,
                "peak_rss_mib": rec.peak_rss_mib,
                "model_loads": rec.model_loads,
            },
        }
        self.write()

    def outputs(self, job: SceneJob) -> SceneOutputs:
        """A done scene's :class:`SceneOutputs`, from its entry."""
        e = self.scenes[job.name]
        return SceneOutputs(
            out_dir=job.out_dir,
            files={k: job.out_dir / n for k, n in OUTPUT_NAMES.items() if n in e["outputs"]},
            windows=e["windows"],
            windows_skipped=e["windows_skipped"],
            seconds=e["seconds"],
            model_seconds=e["model_seconds"],
            polygons=e["polygons"],
            layers=None if e.get("layers") is None else _layers_from(e["layers"]),
        )

    def write(self) -> None:
        """Write the manifest atomically (a temporary file, flushed to disk, then renamed)."""
        data = {"format": MANIFEST_FORMAT, "scenes": dict(sorted(self.scenes.items()))}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")  # one writer: the same name
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def _folder(self, job: SceneJob) -> str:
        return Path(os.path.relpath(job.out_dir, self.path.parent)).as_posix()
