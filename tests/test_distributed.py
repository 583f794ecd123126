"""The Dask executor: a LocalCluster and a real scheduler with workers, against a local run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import synthetic_s2
from helpers import OPTIONS, batch_scenes, digests
from helpers import cli_output as cli

from geocam.batch import MANIFEST_NAME
from geocam.chunks import chunk_blocks
from geocam.distributed import plan_cluster
from geocam.errors import ConfigError

pytest.importorskip("distributed")


def test_plan_cluster() -> None:
    cores = os.cpu_count() or 1
    assert plan_cluster("local:2", 1).local_workers == 2
    assert plan_cluster("local:2", None).threads == max(1, cores // 2)
    assert plan_cluster("local", 1).local_workers == cores
    assert plan_cluster("tcp://127.0.0.1:8786", None).local_workers is None
    for bad in ("local:0", "local:x", "cluster"):
        with pytest.raises(ConfigError, match="scheduler"):
            plan_cluster(bad, None)


def test_local_cluster_matches_a_local_run(
    make_scene: Callable[..., Path], tiny_model: Path, tmp_path: Path, worker_env: dict[str, str]
) -> None:
    scenes = [str(p) for p in batch_scenes(make_scene)]
    args = [*scenes, "--model", str(tiny_model), *OPTIONS, "-q"]
    assert cli(*args, "--out", str(tmp_path / "local"))[0] == 0
    code, output = cli(*args, "--out", str(tmp_path / "dask"), "--scheduler", "local:2")
    assert code == 0, output
    assert digests(tmp_path / "dask") == digests(tmp_path / "local")
    entries = json.loads((tmp_path / "dask" / MANIFEST_NAME).read_text())["scenes"].values()
    assert {e["status"] for e in entries} == {"done"}
    assert all(e["process"]["model_loads"] == 1 for e in entries)  # once per worker
    assert len({e["process"]["pid"] for e in entries} | {os.getpid()}) >= 2  # not in the client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cluster(tmp_path: Path, worker_env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """A ``dask scheduler`` and two ``dask worker`` processes (1 thread each) on 127.0.0.1."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler_file = tmp_path / "scheduler.json"
    log = open(tmp_path / "cluster.log", "wb")  # noqa: SIM115 - closed below
    procs = [
        subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                          "127.0.0.1", "--port", str(port), "--no-dashboard", "--scheduler-file",
                          str(scheduler_file)], env=worker_env, stdout=log, stderr=log)
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline and procs[0].poll() is None, "no scheduler"
            time.sleep(0.1)
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "distributed.cli.dask_worker",
                        address,
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--name",
                        f"w{i}",
                        "--no-dashboard",
                    ],
                    env=worker_env,
                    stdout=log,
                    stderr=log,
                    cwd=tmp_path,
                )
            )
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address, scheduler_file
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def test_scheduler_and_two_workers_match_a_local_run(
    make_scene: Callable[..., Path],
    tiny_model: Path,
    tmp_path: Path,
    cluster: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    address, scheduler_file = cluster
    scenes = [str(p) for p in batch_scenes(make_scene)]
    args = [*scenes, "--model", str(tiny_model), *OPTIONS, "-q"]
    assert cli(*args, "--out", str(tmp_path / "local"))[0] == 0
    monkeypatch.chdir(tmp_path)  # relative paths on the client; the workers' folder differs
    code, output = cli(*[os.path.relpath(s) for s in scenes], "--model", str(tiny_model),
                       *OPTIONS, "-q", "--out", "dask", "--scheduler", address)  # fmt: skip
    assert code == 0, output
    assert digests(tmp_path / "dask") == digests(tmp_path / "local")
    entries = json.loads((tmp_path / "dask" / MANIFEST_NAME).read_text())["scenes"].values()
    assert all(e["process"]["model_loads"] == 1 for e in entries)
    # The scheduler file names the same cluster.
    code, output = cli(*args, "--out", "dask", "--scheduler", str(scheduler_file), "--force")
    assert code == 0, output
    assert "skipped, complete" not in output and digests(tmp_path / "dask") == digests(
        tmp_path / "local"
    )


def test_chunked_scene_matches_a_local_run(
    make_scene: Callable[..., Path], tiny_model: Path, tmp_path: Path, worker_env: dict[str, str]
) -> None:
    # 20 blocks of 64 px in 6 chunks of 128 px (the last row and column of chunks are partial);
    # a nodata corner leaves some blocks without a window to score.
    data = synthetic_s2((256, 320), seed=4)
    data[:, :100, :90] = 0
    scene = make_scene("big.tif", data=data, nodata=0)
    args = [str(scene), "--model", str(tiny_model), *OPTIONS, "-q"]
    assert cli(*args, "--out", str(tmp_path / "local"))[0] == 0
    code, output = cli(*args, "--out", str(tmp_path / "chunked"), "--scheduler", "local:2",
                       "--chunk-px", "128")  # fmt: skip
    assert code == 0, output
    assert digests(tmp_path / "chunked") == digests(tmp_path / "local")
    code, output = cli(*args, "--out", str(tmp_path / "x"), "--scheduler", "local:2",
                       "--chunk-px", "100")  # fmt: skip
    assert code == 2 and "multiple of `block_px`=64" in output


def test_chunks_cover_the_blocks_once() -> None:
    chunks = chunk_blocks((300, 330), 64, 128)
    blocks = [b for chunk in chunks for b in chunk]
    assert sorted(blocks) == [(i, j) for i in range(5) for j in range(6)]
    assert len(chunks) == 3 * 3 and chunks[0] == [(0, 0), (0, 1), (1, 0), (1, 1)]
