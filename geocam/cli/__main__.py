"""``python -m geocam.cli``: the ``geocam`` command."""

from . import main

main()
