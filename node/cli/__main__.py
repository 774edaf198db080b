"""``python -m node.cli``: the ``opus`` command."""

import sys

from node.cli import main

if __name__ == "__main__":
    sys.exit(main())
