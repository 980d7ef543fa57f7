"""Faces found in group photos turned by -45 to 45 degrees (a tilted camera).

    .venv/bin/python scripts/detect_roll_eval.py [--faces ../shared/faces] [--roll-pass-deg 12]

Each photo is turned on an enlarged canvas (grey corners, so no face leaves the frame and
no mirrored face appears); a face counts as found when a detection's centre lies within
half a face of where the upright photo's face went. False = detections matching no face.
`--roll-pass-deg 999` switches the detector's roll pass off, for comparison.
"""

import argparse
import time
from pathlib import Path

import numpy as np

import facefuse.detect as detect
from facefuse.detect import turned
from facefuse.io import read_image

PHOTOS = ["insightface_t1.jpg", "faceapi_bbt4.jpg", "fnp_multiface.jpg", "faceapi_bbt1.jpg", "faceapi_bbt5.jpg",
          "simswap_multi_people.jpg", "fr_two_people.jpg", "faceapi_bbt3.jpg", "dlib_voc_2008_002079.jpg",
          "fr_kit_with_rose.jpg"]
ANGLES = (0, -45, -30, -15, 15, 30, 45)


def centre(box) -> np.ndarray:
    return np.array(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "faces"))
    ap.add_argument("--roll-pass-deg", type=float, default=detect.ROLL_PASS_DEG)
    args = ap.parse_args()
    detect.ROLL_PASS_DEG = args.roll_pass_deg
    detector = detect.FaceDetector()
    per_angle = {a: [0, 0] for a in ANGLES}
    false = 0
    seconds = 0.0
    for name in PHOTOS:
        image = read_image(Path(args.faces) / name)
        upright = detector.detect(image).faces
        for angle in ANGLES:
            photo, m = turned(image, angle, fill=(128, 128, 128))
            t0 = time.perf_counter()
            faces = detector.detect(photo).faces
            seconds += time.perf_counter() - t0
            want = [(m @ np.append(centre(f.box), 1.0), f.size) for f in upright]
            got = [centre(f.box) for f in faces]
            per_angle[angle][0] += sum(any(np.hypot(*(g - c)) < s / 2 for g in got) for c, s in want)
            per_angle[angle][1] += len(want)
            false += sum(not any(np.hypot(*(g - c)) < s / 2 for c, s in want) for g in got)
    found = sum(h for h, _ in per_angle.values())
    total = sum(n for _, n in per_angle.values())
    print(f"roll pass from {args.roll_pass_deg:g} deg: found {found}/{total} ({found / total:.1%}), "
          f"false {false}, detection {seconds:.1f} s")
    print("| angle | " + " | ".join(f"{a:+d}" for a in ANGLES) + " |")
    print("|---|" + "---|" * len(ANGLES))
    print("| found | " + " | ".join(f"{h}/{n}" for h, n in per_angle.values()) + " |")


if __name__ == "__main__":
    main()
