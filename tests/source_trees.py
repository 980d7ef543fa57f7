"""The package's source files as syntax trees, for the tests that read the code itself."""

from __future__ import annotations

import ast
from pathlib import Path

PARSE_TRIES = 3


def parse_module(path: Path) -> ast.Module:
    """`ast.parse` of a file. CPython 3.11 can raise a spurious "AST constructor recursion
    depth mismatch" SystemError while other threads of the process build syntax trees
    (python/cpython#106905: the depth is kept per interpreter, not per thread; seen once in
    five full runs here, after the server and pipeline tests left threads behind): such a
    parse is tried again; any other error, or a third failure, is raised."""
    text = path.read_text(encoding="utf-8")
    for attempt in range(PARSE_TRIES):
        try:
            return ast.parse(text)
        except SystemError as e:
            if "recursion depth mismatch" not in str(e) or attempt == PARSE_TRIES - 1:
                raise
    raise AssertionError("unreachable")
