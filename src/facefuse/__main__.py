"""`python -m facefuse ...` is the `facefuse` command."""

import sys

from .cli import main

sys.exit(main())
