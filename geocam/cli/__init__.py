"""geocam's command line: ``geocam run``, ``geocam train``, ``geocam evaluate``.

Commands only parse options, build a config, call one library function and exit. The command
line owns logging and progress bars; the library stays silent. Errors from geocam exit with
code 2 and a one-line message. Each option comes from a config field (geocam.options).
"""

from . import run, train
from .base import main

__all__ = ("main", "run", "train")
