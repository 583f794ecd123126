"""The Dask executor: one task per scene on a ``dask.distributed`` cluster.

``--scheduler local`` or ``local:N`` starts a LocalCluster of N worker processes (one task at a
time each, the scene using ``--threads`` torch threads); ``tcp://HOST:PORT`` or a scheduler file
(``*.json``) uses a running cluster. Each worker runs :class:`GeocamWorker`, a worker plugin that
owns the worker's process state (torch threads, the malloc arena and each stage's malloc
settings) and loads the model once for all the scenes it runs. Workers write each scene's
outputs to its folder under ``--out`` (a filesystem they share with the client) and return a
:class:`~geocam.batch.SceneRecord`; the client keeps the manifest and the progress bar.

A scene's outputs are those of a local run with the same ``--threads`` byte for byte: the task
runs the same :func:`geocam.pipeline.iter_run_scene`, with the same settings.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dask
from distributed import Client, LocalCluster, as_completed, get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from .batch import SceneJob, SceneRecord, run_scene_job
from .chunks import ChunkScores, chunk_blocks, scene_shape, score_chunk
from .config import SceneConfig
from .errors import ConfigError
from .model import GeocamModel
from .pipeline import load_run_model
from .runtime import MALLOC_TUNING, configure_process

log = logging.getLogger(__name__)

#: The worker plugin's name on the cluster.
PLUGIN_NAME = "geocam"
#: Dask settings of the LocalClusters geocam starts (``DASK_DISTRIBUTED__...`` variables set
#: the same on a cluster's workers, e.g. ``DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False``).
QUIET_WORKERS: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.gil.enabled": False,
    "distributed.admin.tick.interval": "1s",
}


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    """How ``--scheduler`` and ``--threads`` translate to a cluster.

    Attributes:
        address: what ``--scheduler`` said.
        local_workers: worker processes of a LocalCluster to start; None for a running cluster.
        threads: torch threads per scene task; None: each worker's default (all its cores).
    """

    address: str
    local_workers: int | None
    threads: int | None


def plan_cluster(address: str, threads: int | None) -> ClusterPlan:
    """Parse ``--scheduler``: ``local``, ``local:N``, ``tcp://HOST:PORT`` or a scheduler file.

    ``local`` starts ``cores // threads`` workers; ``local:N`` with no ``threads`` gives each
    worker ``cores // N`` threads (at least one).

    Args:
        address: the ``--scheduler`` value.
        threads: ``--threads`` (torch threads per scene), or None.

    Raises:
        ConfigError: the address is none of these forms.
    """
    cores = os.cpu_count() or 1
    if address == "local" or address.startswith("local:"):
        count = address.partition(":")[2]
        if count and not (count.isdigit() and int(count) >= 1):
            raise ConfigError(
                f"`scheduler`={address!r}: the worker count must be a positive integer, "
                "e.g. local:2"
            )
        workers = int(count) if count else max(1, cores // (threads or 1))
        return ClusterPlan(address, workers, threads or max(1, cores // workers))
    if address.endswith(".json") or "://" in address:
        return ClusterPlan(address, None, threads)
    raise ConfigError(
        f"`scheduler`={address!r} is not a scheduler address; pass local, local:N, "
        "tcp://HOST:PORT or a scheduler file (.json)"
    )


class GeocamWorker(WorkerPlugin):
    """Dask worker plugin: sets the worker's process state and loads models once per worker.

    Args:
        threads: torch intra-op threads of the worker process; None leaves the worker's.
    """

    name = PLUGIN_NAME

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self.models: dict[tuple[str, int, int, str, str], GeocamModel] = {}
        self.loads = 0

    def setup(self, worker: Any) -> None:  # noqa: ANN401 - a distributed.Worker
        """Called by Dask on each worker: one malloc arena, torch threads."""
        configure_process(self.threads)

    def teardown(self, worker: Any) -> None:  # noqa: ANN401 - a distributed.Worker
        """Called by Dask when the worker closes: drop the models."""
        self.models.clear()

    def model(self, path: Path, config: SceneConfig) -> GeocamModel:
        """The model file loaded for ``config``'s device and precision, once per worker.

        Args:
            path: the model file (a path every worker can read).
            config: run settings (device, precision).
        """
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns, config.device, config.precision)
        if key not in self.models:
            self.models[key] = load_run_model(path, config)
            self.loads += 1
        return self.models[key]


def scene_task(job: SceneJob, model_path: str, config: SceneConfig) -> SceneRecord:
    """A Dask task: run one scene on this worker with the worker's model.

    Args:
        job: the scene (absolute paths).
        model_path: the model file (absolute path).
        config: run settings.
    """
    plugin = _plugin()
    model = plugin.model(Path(model_path), config)
    return run_scene_job(job, model, config, model_loads=plugin.loads, hooks=MALLOC_TUNING)


def _plugin() -> GeocamWorker:
    """This worker's :class:`GeocamWorker` (set up now if the worker joined without it)."""
    worker = get_worker()
    plugin = worker.plugins.get(PLUGIN_NAME)
    if not isinstance(plugin, GeocamWorker):
        plugin = GeocamWorker(None)
        plugin.setup(worker)
        worker.plugins[PLUGIN_NAME] = plugin
    return plugin


def chunk_task(
    job: SceneJob, model_path: str, config: SceneConfig, blocks: list[tuple[int, int]]
) -> ChunkScores:
    """A Dask task: score one chunk of a scene (see :mod:`geocam.chunks`).

    Args:
        job: the scene (absolute paths).
        model_path: the model file (absolute path).
        config: run settings.
        blocks: the chunk's block indexes (row, col).
    """
    plugin = _plugin()
    return score_chunk(job, plugin.model(Path(model_path), config), config, blocks)


def score_chunks(
    client: Client, job: SceneJob, model_path: Path, config: SceneConfig, chunk_px: int
) -> Iterator[ChunkScores]:
    """Score a scene's windows on the cluster, one task per chunk; yield chunks as they finish.

    Args:
        client: a client from :func:`connect`.
        job: the scene.
        model_path: the model file, readable by every worker.
        config: run settings.
        chunk_px: chunk edge in pixels, a multiple of ``config.block_px``.
    """
    chunks = chunk_blocks(scene_shape(job, config), config.block_px, chunk_px)
    batch, far = uuid.uuid4().hex[:8], absolute(job)
    model = str(Path(model_path).absolute())
    futures = [
        client.submit(
            chunk_task,
            far,
            model,
            config,
            blocks,
            key=f"geocam-{batch}-{job.name}-chunk{i}",
            pure=False,
            priority=len(chunks) - i,
        )
        for i, blocks in enumerate(chunks)
    ]
    try:
        for future in as_completed(futures):
            scores: ChunkScores = future.result()
            yield scores
    finally:
        client.cancel([f for f in futures if not f.done()])


@contextmanager
def connect(plan: ClusterPlan) -> Iterator[Client]:
    """A Dask client for ``plan``, with :class:`GeocamWorker` registered on every worker.

    A LocalCluster is started (worker processes, one task at a time each) and closed after;
    a running cluster is only connected to.

    Args:
        plan: from :func:`plan_cluster`.

    Raises:
        ConfigError: the scheduler cannot be reached.
    """
    with ExitStack() as stack:
        try:
            if plan.local_workers is not None:
                # Scene tasks run for seconds to minutes: the workers' stack sampling and the
                # event loops' health ticks only take CPU from them.
                stack.enter_context(dask.config.set(QUIET_WORKERS))
                cluster = stack.enter_context(
                    LocalCluster(
                        n_workers=plan.local_workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                        silence_logs=logging.ERROR,
                    )
                )
                client = stack.enter_context(Client(cluster))
            elif plan.address.endswith(".json"):
                client = stack.enter_context(Client(scheduler_file=plan.address, timeout=30))
            else:
                client = stack.enter_context(Client(plan.address, timeout=30))
        except OSError as err:
            raise ConfigError(
                f"`scheduler`={plan.address!r} cannot be reached ({err}); start the scheduler "
                "and workers (see the README) or pass --scheduler local"
            ) from err
        client.register_plugin(GeocamWorker(plan.threads), name=PLUGIN_NAME)
        yield client


def absolute(job: SceneJob) -> SceneJob:
    """The job with absolute paths, as workers with another working folder need them."""
    return replace(
        job, paths=tuple(p.absolute() for p in job.paths), out_dir=job.out_dir.absolute()
    )


def run_batch(
    client: Client, jobs: Sequence[SceneJob], model_path: Path, config: SceneConfig
) -> Iterator[SceneRecord]:
    """Run scenes on the cluster, one task each; yield their records as they finish.

    The first scene that fails stops the batch: the scenes not started are cancelled and its
    error is raised here (the records yielded before it are final).

    Args:
        client: a client from :func:`connect`.
        jobs: the scenes, in the order they should start.
        model_path: the model file, readable by every worker.
        config: run settings.
    """
    batch = uuid.uuid4().hex[:8]
    model = str(Path(model_path).absolute())
    futures = [
        client.submit(
            scene_task,
            absolute(job),
            model,
            config,
            key=f"geocam-{batch}-{i}-{job.name}",
            pure=False,
            priority=len(jobs) - i,
        )
        for i, job in enumerate(jobs)
    ]
    try:
        for future in as_completed(futures):
            record: SceneRecord = future.result()
            yield record
    finally:
        client.cancel([f for f in futures if not f.done()])
