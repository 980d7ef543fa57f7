"""Stage 3 of the classical engine: what to keep. Each rule that keeps the target's pixels
gives a named mask (KeptMasks); `compose_kept` is the one place they are combined, and
`kept_report` says how much of the face each kept."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class KeptMasks:
    """Stage 3: the named rules. Each is 0..1 over the ROI, 1 where the source may show.
    `compose_kept` is the one place they are combined."""

    outline: np.ndarray  # the face region (the inner mouth cut: the target's teeth stay)
    skin: np.ndarray  # the face's skin (no eyes, brows, lips): where light is learned
    uncovered: np.ndarray  # not hair over the forehead, not a hand / brim / lock over the target (occlusion.unoccluded)
    light_trust: np.ndarray  # skin of both faces that is skin to learn light from
    target_drawn: np.ndarray  # the target's triangles facing away are not drawn
    target_facing: np.ndarray  # the target's edge-on surfaces keep its own skin
    source_usable: np.ndarray  # the source (or its mirror side) shows the surface well
    source_clear: np.ndarray  # no strand, patch or background on the source's skin (occlusion.source_occluders)
    # no hat brim or hood over most of the source's face (occlusion.source_cover)
    source_uncovered: np.ndarray | float = 1.0


def compose_kept(kept: KeptMasks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(region, shown, filled): where the fused face is blended in at all (a hard cut,
    feathered by the blend), how much of the source's texture shows inside it, and how much
    of the rest is where the source would show but has no skin of its own (a strand, a hand,
    a patch, a brim: `filled`, the target's skin in the fused face's tone, light.filled_tone).
    What is neither is the target's own (holes there are not eroded by the feather)."""
    region = kept.outline * kept.uncovered
    usable = np.clip(kept.source_usable * kept.target_drawn * kept.target_facing, 0.0, 1.0)
    shown = usable * kept.source_clear
    if isinstance(kept.source_uncovered, np.ndarray):  # (1: no cover found, or the track's finds reused)
        shown = shown * kept.source_uncovered
    return region, shown, usable - shown


def kept_report(kept: KeptMasks, eyes: np.ndarray, frames: np.ndarray | None, step: int = 2) -> dict[str, float]:
    """Per rule, the share of the face (its outline) where it kept the target's pixels,
    counted on every `step`-th pixel each way (a report's precision at a quarter the cost)."""
    grid = (slice(None, None, step), slice(None, None, step))
    face = kept.outline[grid]
    total = max(float(face.sum()), 1e-6)

    def share(keeps_target: np.ndarray | float) -> float:
        if not isinstance(keeps_target, np.ndarray):
            return round(float(keeps_target), 4)
        return round(float((keeps_target[grid] * face).sum()) / total, 4)

    report = {name: share(1.0 - getattr(kept, name)) for name in
              ("uncovered", "target_drawn", "target_facing", "source_usable", "source_clear", "source_uncovered")}
    report["target_eyes"] = share(eyes)
    report["target_frames"] = 0.0 if frames is None else share(frames)
    return report
