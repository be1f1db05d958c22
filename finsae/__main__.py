"""`python -m finsae ...`: the `finsae` command."""

import sys

from .cli import main

sys.exit(main())
