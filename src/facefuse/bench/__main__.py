"""`python -m facefuse.bench`: the bench command, or (--child) one fusion in a fresh process
whose RSS the parent measures."""

import sys

from .fusion import child_main

if "--child" in sys.argv[1:]:
    sys.exit(child_main(sys.argv[1:]))
from ..cli import main  # noqa: E402

sys.exit(main(["bench", *sys.argv[1:]]))
