"""Make docs/example.jpg, the README's picture: source | target | result, by facefuse itself.

    .venv/bin/python scripts/readme_figure.py
"""

from pathlib import Path

import cv2
import numpy as np

from facefuse import Fuser, read_image, write_image

ROOT = Path(__file__).resolve().parents[1]
HEIGHT = 360


def main() -> None:
    source, target = ROOT / "examples" / "source.jpg", ROOT / "examples" / "target.jpg"
    result = Fuser().fuse(source, target)
    tiles = [read_image(source), read_image(target), result]
    row = [cv2.resize(t, (round(t.shape[1] * HEIGHT / t.shape[0]), HEIGHT), interpolation=cv2.INTER_AREA) for t in tiles]
    gap = np.full((HEIGHT, 6, 3), 255, np.uint8)
    write_image(ROOT / "docs" / "example.jpg", np.hstack([row[0], gap, row[1], gap, row[2]]), overwrite=True, quality=85)


if __name__ == "__main__":
    main()
