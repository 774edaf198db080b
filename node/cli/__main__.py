"""``python -m node.cli``: the ``opus`` command."""

import sys

from node.cli import main

sys.exit(main())
