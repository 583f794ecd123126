"""Logging of the command line: stderr at the level ``-v`` / ``-q`` set, and a run log file.

``geocam run`` writes :data:`RUN_LOG` into ``--out``, beside the scene outputs and the batch
manifest rather than inside a scene's staged output set: the log covers the whole command
(several scenes, skipped ones, recovery of a killed run) and is still being written when a
scene's ``run.json`` lists and hashes its files. A run that fails in a folder it created takes
its log away with the folder, so that nothing is left behind (:func:`drop_run_log`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

#: The run log ``geocam run`` appends to in ``--out``.
RUN_LOG = "geocam.log"

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _RunLogHandler(logging.FileHandler):
    """A log file that never disturbs the command.

    A write it cannot make (a full disk) is dropped, not reported on stderr, where the
    command's one-line error goes.
    """

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def configure_logging(verbosity: int, log_file: Path | None = None) -> None:
    """Send log records to stderr at a level set by ``verbosity``, and to a file at INFO.

    Args:
        verbosity: 0 warnings and errors, 1 info (``-v``), 2 debug (``-vv``).
        log_file: also append records to this file (at INFO, DEBUG with ``-vv``); None: none.
    """
    stderr_level = max(logging.DEBUG, logging.WARNING - 10 * verbosity)
    stream = logging.StreamHandler(sys.stderr)
    stream.setLevel(stderr_level)
    handlers: list[logging.Handler] = [stream]
    level = stderr_level
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = _RunLogHandler(log_file)
        to_file.setLevel(min(logging.INFO, stderr_level))
        handlers.append(to_file)
        level = min(level, to_file.level)
    logging.basicConfig(level=level, format=_FORMAT, handlers=handlers, force=True)
    # GDAL's warnings come through these loggers; a failing write adds some to geocam's error.
    for name in ("rasterio", "pyogrio"):
        logging.getLogger(name).setLevel(logging.ERROR if verbosity < 1 else logging.NOTSET)


def log_failure(err: BaseException) -> None:
    """Record why a command failed in the log files only (stderr gets its one-line message).

    Errors geocam raises on purpose, and interrupts, are recorded as their message; anything
    else with its traceback.
    """
    from ..errors import GeocamError
    from ..terminal import Terminated

    expected = isinstance(err, GeocamError | KeyboardInterrupt | Terminated)
    record = logging.getLogger("geocam").makeRecord(
        "geocam", logging.ERROR, __file__, 0, "failed: %s: %s", (type(err).__name__, err),
        None if expected else (type(err), err, err.__traceback__),
    )  # fmt: skip
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def command_line() -> str:
    """The command that started this process, as a user would type it."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def drop_run_log(out_dir: Path, made: bool, verbosity: int) -> None:
    """After a failed run: remove the run log and ``out_dir`` when the run created the folder.

    Args:
        out_dir: the run's ``--out``.
        made: the folder did not exist before the run.
        verbosity: the stderr level to keep (see :func:`configure_logging`).
    """
    if not made:
        return  # the log of a failure in an existing folder stays, as its record
    configure_logging(verbosity)  # closes the file
    (out_dir / RUN_LOG).unlink(missing_ok=True)
    try:
        out_dir.rmdir()
    except OSError:
        pass  # something else is in it (outputs of finished scenes)
