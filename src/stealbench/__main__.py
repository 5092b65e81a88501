"""``python -m stealbench``: the ``stealbench`` command (:mod:`stealbench.cli`)."""

import sys

from .cli import main

sys.exit(main())
