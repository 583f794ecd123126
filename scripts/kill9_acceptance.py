"""Issue 12's acceptance check: kill -9 at five points of a run, rerun, compare with a clean run.

    python scripts/kill9_acceptance.py SCENE --model MODEL --work DIR [--threads 1]

1. Two clean runs of the same command: their outputs must be byte-identical (run.json aside).
2. Four runs killed with SIGKILL from outside while the staging folder shows the model pass,
   pass 2, the COGs and the vectors; one killed from inside half-way through the commit's moves
   over an older output set (``tests/fault_driver.py``). Each is rerun with the same command:
   the outputs must equal the clean run's by SHA-256, with no ``.geocam-tmp-*`` folder left.

Prints one line per check and exits 1 if any fails.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGING = ".geocam-tmp-"


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of each output in ``folder`` but run.json, the batch manifest and the run log.

    Their timings and paths differ run to run.
    """
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name not in ("run.json", "geocam-batch.json", "geocam.log")
    }


def geocam(args: list[str], fault: str | None = None) -> list[str]:
    """The command line of a geocam run, with a fault injected by tests/fault_driver.py."""
    if fault is None:
        return [sys.executable, "-m", "geocam.cli", *args]
    return [sys.executable, str(REPO / "tests/fault_driver.py"), fault, *args]


def env() -> dict[str, str]:
    """The environment of the runs: this checkout (and tests/, for the driver) first."""
    path = os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def staged(out: Path) -> set[str]:
    """Names of the files in ``out``'s staging folders."""
    names: set[str] = set()
    for folder in out.glob(STAGING + "*"):
        try:
            names |= {p.name for p in folder.iterdir()}
        except FileNotFoundError:
            pass
    return names


def kill_when(cmd: list[str], out: Path, ready: Callable[[set[str]], bool]) -> str:
    """Start ``cmd``, SIGKILL it once ``ready(staged files)`` holds; return what was staged."""
    proc = subprocess.Popen(cmd, env=env(), stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    while proc.poll() is None:
        names = staged(out)
        if ready(names):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return ",".join(sorted(names))
        time.sleep(0.01)
    raise SystemExit(f"the run ended (exit {proc.returncode}) before the kill point")


def main() -> int:
    """Run the checks; 0 when all pass."""
    parser = argparse.ArgumentParser()
    parser.add_argument("scene")
    parser.add_argument("--model", required=True)
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--threads", default="1")
    ns = parser.parse_args()
    work: Path = ns.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    def args(out: Path, *extra: str) -> list[str]:
        return ["run", ns.scene, "--model", ns.model, "--out", str(out), "--threads", ns.threads,
                "-q", *extra]  # fmt: skip

    failed = 0

    def report(name: str, ok: bool, detail: str) -> None:
        nonlocal failed
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)  # noqa: T201

    t0 = time.perf_counter()
    subprocess.run(geocam(args(work / "clean")), env=env(), check=True)
    clean_s = time.perf_counter() - t0
    subprocess.run(geocam(args(work / "clean2")), env=env(), check=True)
    clean = digests(work / "clean")
    report("two clean runs", digests(work / "clean2") == clean,
           f"{len(clean)} files byte-identical ({clean_s:.0f} s a run)")  # fmt: skip
    for name, sha in clean.items():
        print(f"     {sha}  {name}")  # noqa: T201

    points: list[tuple[str, Callable[[set[str]], bool]]] = [
        ("model pass", lambda s: "work_valid.tif" in s and "work_heat.tif" not in s),
        ("pass 2", lambda s: "work_heat.tif" in s and "cam.tif" not in s),
        ("COGs", lambda s: "cam.tif" in s and "salient.gpkg" not in s),
        ("vectors", lambda s: "salient.gpkg" in s),
    ]
    start = time.monotonic()
    for name, ready in points:
        out = work / f"kill_{name.replace(' ', '_')}"
        if name == "model pass":  # a few seconds into the pass, not at its first block

            def ready_later(
                s: set[str],
                r: Callable[[set[str]], bool] = ready,
                seen: list[float] = [0.0],  # noqa: B006
            ) -> bool:
                if r(s) and not seen[0]:
                    seen[0] = time.monotonic()
                return bool(seen[0]) and time.monotonic() - seen[0] > 3 and r(s)

            at = kill_when(geocam(args(out)), out, ready_later)
        else:
            at = kill_when(geocam(args(out)), out, ready)
        subprocess.run(geocam(args(out)), env=env(), check=True)
        left = sorted(p.name for p in out.iterdir() if p.name.startswith(STAGING))
        report(f"kill -9 in {name}", digests(out) == clean and not left,
               f"staged [{at}]; rerun identical, leftovers {left}")  # fmt: skip

    out = work / "kill_commit"
    subprocess.run(geocam(args(out, "--threshold", "0.3", "--no-preview")), env=env(), check=True)
    old = digests(out)
    proc = subprocess.run(geocam(args(out), fault="commit@4:kill"), env=env(), check=False)
    mixed = digests(out)
    subprocess.run(geocam(args(out)), env=env(), check=True)
    left = sorted(p.name for p in out.iterdir() if p.name.startswith(STAGING))
    moved = sum(mixed.get(n) == clean[n] for n in clean)
    report("kill -9 in the commit", proc.returncode == -signal.SIGKILL and digests(out) == clean
           and not left, f"exit {proc.returncode}, {moved} of {len(clean)} new files in place "
           f"(old set: {len(old)} files); rerun identical, leftovers {left}")  # fmt: skip
    print(f"{time.monotonic() - start:.0f} s for the kills and reruns")  # noqa: T201
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
