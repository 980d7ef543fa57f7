"""The one path every image takes: read -> detect -> plan ROI -> fuse -> blend -> paste back.

`Fuser` holds what is expensive to create (face models, the engine) and is reused for
every call; front-ends (CLI, WebUI, REST, batch, bench) only translate into `Fuser` calls.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from .blend import compose
from .config import FusionParams, Settings, load_config
from .detect import Detection, Face, FaceDetector
from .engines import SourceFace, create_engine
from .errors import NoFaceError
from .io import ImageSource, read_image
from .pose import fit_pose, pose_notes
from .roi import ROI, output_size, plan_roi, resize_frame

STAGES = ("decode", "detect", "roi", "engine", "blend", "paste")
SOURCE_CACHE = 8  # prepared source faces kept per Fuser


@dataclass
class FaceUsed:
    index: int
    face: Face  # in output pixels
    roi: ROI

    def to_dict(self) -> dict:
        return {"index": self.index, **self.face.to_dict(), "roi": self.roi.to_dict()}


@dataclass
class FusionResult:
    """The fused image (RGB uint8, output size) and what happened on the way."""

    image: np.ndarray
    faces: list[FaceUsed]
    target_faces_found: int
    params: FusionParams
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # for the user: e.g. a face turned too far (pose.pose_notes)

    def report(self) -> dict:
        h, w = self.image.shape[:2]
        return {
            "output_size": [w, h],
            "target_faces_found": self.target_faces_found,
            "faces_fused": [f.to_dict() for f in self.faces],
            "params": self.params.model_dump(),
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "notes": list(self.notes),
        }


class _Timer:
    def __init__(self) -> None:
        self.times: dict[str, float] = {s: 0.0 for s in STAGES}

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0


class Fuser:
    """Loads the face models and the engine once; fuses any number of image pairs."""

    def __init__(self, config: Union[Settings, str, None] = None):
        self.settings = config if isinstance(config, Settings) else load_config(config)
        _set_threads(self.settings.inference.threads)
        self.detector = FaceDetector.from_settings(self.settings)
        self.engine = create_engine(self.settings.inference.engine, self.settings.inference)
        self._lock = threading.Lock()
        self._sources: OrderedDict = OrderedDict()

    # -- building blocks ---------------------------------------------------------------
    def read(self, source: ImageSource, role: str = "image", reduce_to: int | None = None) -> np.ndarray:
        """Decode with this Fuser's pixel limit; errors name the role ("source a.jpg: ...")."""
        if isinstance(source, np.ndarray) and source.ndim == 3 and source.shape[2] == 3 and source.dtype == np.uint8:
            return source
        label = role if isinstance(source, (bytes, bytearray, memoryview, np.ndarray)) else f"{role} {source}"
        return read_image(source, max_pixels=self.settings.output.max_pixels, name=label, reduce_to=reduce_to)

    def decode_size_for(self, params: FusionParams) -> int | None:
        """The smallest long side a target must be decoded at for these parameters: the
        output's, but never below what detection looks at (None: full size)."""
        if params.resolution == "original":
            return None
        return max(int(params.resolution), self.settings.face_detection.max_side)

    def detect(self, image: Union[ImageSource, np.ndarray], threshold: float | None = None) -> Detection:
        """Faces of an image in fusion order (face_index 0 = largest)."""
        img = self.read(image)
        thr = self.settings.face_detection.threshold if threshold is None else threshold
        return self.detector.detect(img, threshold=thr)

    def params(self, **overrides: Any) -> FusionParams:
        return self.settings.fusion_params(**overrides)

    def prepare_source(self, source: Union[ImageSource, SourceFace], face_index: int = 0, threshold: float | None = None) -> SourceFace:
        """Decode + detect + let the engine prepare the source face.

        The result is kept (by the content of the image, the face and the threshold) for the
        next calls: a WebUI session, a REST client or a batch fusing one face into many
        targets decodes and analyses it once.
        """
        if isinstance(source, SourceFace):
            return source
        thr = self.settings.face_detection.threshold if threshold is None else threshold
        key = (_content_key(source), face_index, thr)
        with self._lock:
            if key in self._sources:
                self._sources.move_to_end(key)
                return self._sources[key]
        image = self.read(source, "source")
        faces = self.detect(image, thr).faces
        if not faces:
            raise NoFaceError("source: no face found", which="source")
        if face_index >= len(faces):
            raise NoFaceError(f"source: face {face_index} requested, only {len(faces)} found", which="source")
        prepared = self.engine.prepare_source(image, faces[face_index])
        with self._lock:
            self._sources[key] = prepared
            while len(self._sources) > SOURCE_CACHE:
                self._sources.popitem(last=False)
        return prepared

    # -- the path ----------------------------------------------------------------------
    def fuse(self, source, target, **params: Any) -> np.ndarray:
        """Fuse and return the RGB uint8 result (see FusionParams for the parameters)."""
        return self.fuse_detailed(source, target, self.params(**params)).image

    def fuse_detailed(self, source, target, params: FusionParams | None = None) -> FusionResult:
        params = params or self.params()
        timer = _Timer()
        with timer.stage("decode"):
            target_img = self.read(target, "target", reduce_to=self.decode_size_for(params))
        with timer.stage("detect"):  # includes decoding the source, unless it is cached
            src = self.prepare_source(source, params.source_face_index, params.threshold)
            detection = self.detector.detect(target_img, threshold=params.threshold)
        faces = detection.faces
        if not faces:
            raise NoFaceError("target: no face found", which="target")
        if params.all_faces:
            chosen = list(range(len(faces)))
        elif params.face_index < len(faces):
            chosen = [params.face_index]
        else:
            raise NoFaceError(f"target: face {params.face_index} requested, only {len(faces)} found", which="target")

        h, w = target_img.shape[:2]
        out_w, out_h = output_size(w, h, params.resolution)
        factor = out_w / w
        with timer.stage("paste"):
            output = resize_frame(target_img, (out_w, out_h))
            if output is target_img:
                output = target_img.copy()
        used: list[FaceUsed] = []
        notes: list[str] = []
        source_yaw = fit_pose(src.face.landmarks).yaw
        for index in chosen:
            with timer.stage("roi"):
                face = faces[index].scaled(factor)
                roi = plan_roi(face, out_w, out_h, params.padding)
                roi_img = output[roi.slices]
                lms = face.landmarks - roi.offset
            with timer.stage("engine"):
                fused = self.engine.fuse(src, roi_img, lms, params.ratio)
            with timer.stage("blend"):
                fused_roi = compose(fused, params.mode, params.smoothing, params.brightness,
                                    params.contrast, params.saturation)
            with timer.stage("paste"):
                output[roi.slices] = fused_roi
            used.append(FaceUsed(index=index, face=face, roi=roi))
            notes += [n for n in pose_notes(source_yaw, fit_pose(face.landmarks).yaw) if n not in notes]
        timer.times["total"] = sum(timer.times[s] for s in STAGES)
        return FusionResult(image=output, faces=used, target_faces_found=len(faces), params=params,
                            timings=timer.times, notes=notes)


def _content_key(source: ImageSource) -> str:
    """A digest of the image's content (not its name: a file can change under the same name)."""
    h = hashlib.blake2b(digest_size=16)
    if isinstance(source, np.ndarray):
        arr = np.ascontiguousarray(source)
        h.update(repr((arr.shape, arr.dtype.str)).encode())
        h.update(memoryview(arr).cast("B"))
    elif isinstance(source, (bytes, bytearray, memoryview)):
        h.update(source)
    else:
        from .io import read_bytes

        h.update(read_bytes(source, f"source {source}"))  # the same error a decode would give
    return h.hexdigest()


def _set_threads(threads: int) -> None:
    if threads > 0:
        import cv2

        cv2.setNumThreads(threads)


_default: Fuser | None = None
_default_lock = threading.Lock()


def default_fuser() -> Fuser:
    global _default
    with _default_lock:
        if _default is None:
            _default = Fuser()
        return _default


def fuse(source, target, **params: Any) -> np.ndarray:
    """`Fuser().fuse(...)` with a shared Fuser created on first use."""
    return default_fuser().fuse(source, target, **params)
