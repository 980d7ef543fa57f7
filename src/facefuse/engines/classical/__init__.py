"""The default engine: a dense landmark warp of the source face onto the target's geometry,
on a CPU, with no model file. `engine.py` reads as the list of its stages; each stage's
rules live in a module named after what they decide, and every constant in `tuning.py`."""

from __future__ import annotations

from .. import register
from .engine import ClassicalEngine
from .tuning import DEFAULT_TUNING, ClassicalTuning

__all__ = ["ClassicalEngine", "ClassicalTuning", "DEFAULT_TUNING"]

register("classical", ClassicalEngine)
