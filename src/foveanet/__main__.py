"""``python -m foveanet ...``: the same as the ``foveanet`` command (``foveanet.cli``)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
