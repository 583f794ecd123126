"""``python -m geocam.cli``: the ``geocam`` command."""

from . import main

if __name__ == "__main__":
    main()
