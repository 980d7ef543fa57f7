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
from typing import Any, Callable, Mapping, Sequence, Union

import cv2
import numpy as np

from .blend import compose
from .change import changed_share, face_patch, little_change_note
from .config import FusionParams, Settings, load_config
from .detect import FaceDetector
from .engines import create_engine
from .enhancers import enhancer_for
from .errors import ConfigError, NoFaceError
from .faces import Detection, Face, FusedFace, SourceFace
from .hands import find_hands, hands_in_front
from .imaging import LUMA, output_size, resize_frame
from .io import NEUTRAL, DecodedImage, ImageSource, decode_image, encode_like
from .mesh import eye_distance
from .pose import fit_pose, pose_notes
from .regions import TUNING as REGION_TUNING
from .roi import MIN_MARGIN, ROI, plan_roi
from .sharpness import REGION, lift, lift_weight, lifted_box

HAND_MARGIN = 0.5  # the face box's share added round it where hands are looked for (a hand spans a face)
HAND_SIDE = 1280  # px: the long side of the copy the whole image is searched for hands on
STAGES = ("decode", "detect", "roi", "engine", "enhance", "blend", "paste", "encode")
Progress = Callable[[float, str], None]  # (share done 0-1, what is happening)
SOURCE_CACHE = 8  # prepared source faces kept per Fuser
ENLARGE_NOTE_FACTOR = 1.05  # outputs enlarged more than this get a note
# a source face where more than half of the skin was found to be no skin of its own (a strand,
# a hand, hard shadow taken for a patch) gets a note: the result then shows more of the target
# than of the source there (prnet_image03614.jpg, side-lit, on faceapi_bbt1.jpg: 0.60)
HIDDEN_NOTE_SHARE = 0.5
# a still's face larger than this (px) is fused at this size and only the change enlarged
# back: the engine and blend cost grows with the face's pixels, a 4096 output's face is
# ~1100 px, and the detail finer than this is the target's own skin grain either way
STILL_WORK_FACE = 640


@dataclass
class FaceUsed:
    index: int
    face: Face  # in output pixels
    roi: ROI
    # per rule of the engine that kept the target's pixels, the share of the face it kept
    # (FusedFace.kept: why a result looks like the target somewhere)
    kept: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"index": self.index, **self.face.to_dict(), "roi": self.roi.to_dict(), "kept": dict(self.kept)}


@dataclass
class FusionResult:
    """The fused image (RGB uint8, output size) and what happened on the way."""

    image: np.ndarray
    faces: list[FaceUsed]
    target_faces_found: int
    params: FusionParams
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what a person should know about this result

    def report(self) -> dict:
        h, w = self.image.shape[:2]
        return {
            "output_size": [w, h],
            "target_faces_found": self.target_faces_found,
            "notes": list(self.notes),
            "faces_fused": [f.to_dict() for f in self.faces],
            "params": self.params.model_dump(),
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
        }


@dataclass
class EncodedFusion:
    """A fusion from image to encoded image: the bytes, the result, and the decoded target
    (RGB, as decoded: the input size or a reduced JPEG draft) for before/after views."""

    data: bytes
    format: str  # PIL format name
    result: FusionResult
    target: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.result.image.shape[:2]
        return w, h

    @property
    def timings(self) -> dict[str, float]:
        return self.result.timings

    @property
    def seconds(self) -> float:
        """Decode + fusion + encode."""
        return self.result.timings["total"]


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

    def summary(self) -> dict[str, float]:
        """Seconds per stage, and their total."""
        return {**self.times, "total": sum(self.times[s] for s in STAGES)}


class Fuser:
    """Loads the face models, the engine and the enhancer once; fuses any number of image pairs."""

    def __init__(self, config: Union[Settings, str, None] = None):
        self.settings = config if isinstance(config, Settings) else load_config(config)
        _set_threads(self.settings.inference.threads)
        self.detector = FaceDetector.from_settings(self.settings)
        self.engine = create_engine(self.settings.inference.engine, self.settings.inference)
        self.enhancer = enhancer_for(self.settings.inference)  # None unless inference.enhancer is set
        self._lock = threading.Lock()
        self._sources: OrderedDict = OrderedDict()

    # -- building blocks ---------------------------------------------------------------
    def decode(self, source: ImageSource, role: str = "image", reduce_to: int | None = None,
               name: str | None = None, max_pixels: int | None = None) -> DecodedImage:
        """Decode with this Fuser's pixel limit (or a caller's own, e.g. a server's for
        uploads); errors name the image as `name`, by default its role and path
        ("source a.jpg: ...") or, for bytes and arrays, its role."""
        label = name or (role if isinstance(source, (bytes, bytearray, memoryview, np.ndarray)) else f"{role} {source}")
        return decode_image(source, max_pixels=max_pixels or self.settings.output.max_pixels, name=label,
                            reduce_to=reduce_to)

    def read(self, source: ImageSource, role: str = "image", reduce_to: int | None = None,
             name: str | None = None, max_pixels: int | None = None) -> np.ndarray:
        """Like decode, as RGB uint8 (alpha flattened); an RGB uint8 array is used as it is."""
        if isinstance(source, np.ndarray) and source.ndim == 3 and source.shape[2] == 3 and source.dtype == np.uint8:
            return source
        return self.decode(source, role, reduce_to, name, max_pixels).flattened()

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

    def prepare_source(self, source: Union[ImageSource, DecodedImage, SourceFace], face_index: int = 0,
                       threshold: float | None = None) -> SourceFace:
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
        decoded = self._source_pixels(source)
        # transparency is flattened onto grey, not white: white over a face is detected and
        # pasted as skin; an engine that takes the alpha treats transparent pixels as not face
        image = decoded.flattened(NEUTRAL)
        faces = self.detect(image, thr).faces
        if face_index >= len(faces):
            raise NoFaceError("source", requested=face_index if faces else None, found=len(faces))
        prepared = self.engine.prepare_source(image, faces[face_index], alpha=decoded.alpha)
        with self._lock:
            self._sources[key] = prepared
            while len(self._sources) > SOURCE_CACHE:
                self._sources.popitem(last=False)
        return prepared

    def _source_pixels(self, source: Union[ImageSource, DecodedImage]) -> DecodedImage:
        """A source as decoded pixels with its alpha (an RGB uint8 array is used as it is)."""
        if isinstance(source, DecodedImage):
            return source
        if isinstance(source, np.ndarray) and source.ndim == 3 and source.shape[2] == 3 and source.dtype == np.uint8:
            return DecodedImage(rgb=source)
        return self.decode(source, "source")

    def prepare_sources(self, sources: Mapping[int, Any], params: FusionParams) -> dict[int, SourceFace]:
        """A face mapping (target face or track index -> source photo) with each source
        prepared; ConfigError for an index that is not a whole number >= 0."""
        out: dict[int, SourceFace] = {}
        for index, source in sources.items():
            if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                raise ConfigError(f"face mapping: target face index must be an integer >= 0, got {index!r}")
            out[index] = self.prepare_source(source, params.source_face_index, params.threshold)
        return out

    # -- the path ----------------------------------------------------------------------
    def fuse(self, source, target, **params: Any) -> np.ndarray:
        """Fuse and return the RGB uint8 result (see FusionParams for the parameters)."""
        return self.fuse_detailed(source, target, self.params(**params)).image

    def fuse_detailed(self, source, target, params: FusionParams | None = None,
                      sources: Mapping[int, Any] | None = None) -> FusionResult:
        """Fuse and return the result with the faces used and the time of each stage.
        `sources` maps target face indices to their own source photos (or prepared faces):
        those faces, and only those, are fused, each from its own source
        ("0=alice.jpg,2=bob.jpg"); `source` may then be None."""
        params = params or self.params()
        timer = _Timer()
        with timer.stage("decode"):
            target_img = self.read(target, "target", reduce_to=self.decode_size_for(params))
        return self._fuse(source, target_img, params, timer, sources)

    def fuse_encoded(self, source, target, params: FusionParams | None = None, fmt: str = "JPEG",
                     quality: int | None = None, progress: Progress | None = None,
                     source_name: str | None = None, target_name: str | None = None,
                     max_pixels: int | None = None, sources: Mapping[int, Any] | None = None) -> EncodedFusion:
        """Image in, encoded image out: the one path from bytes to bytes that every
        front-end takes. The target is decoded at the scale the output needs (a JPEG draft);
        its transparency, colour profile and EXIF are kept where `fmt` allows. `source` may
        also be a prepared SourceFace, and `sources` a face mapping (see fuse_detailed).
        Timings include decoding and encoding."""
        params = params or self.params()
        quality = self.settings.output.quality if quality is None else quality
        step = progress or (lambda _share, _what: None)
        timer = _Timer()
        step(0.05, "reading images")
        with timer.stage("decode"):
            decoded = self.decode(target, "target", self.decode_size_for(params), target_name, max_pixels)
            target_img = decoded.flattened()
            if source is not None and not isinstance(source, SourceFace):
                source = self.decode(source, "source", name=source_name, max_pixels=max_pixels)  # alpha kept
        step(0.25, "finding faces and fusing")
        result = self._fuse(source, target_img, params, timer, sources)
        step(0.85, "encoding")
        with timer.stage("encode"):
            data = encode_like(result.image, decoded, fmt, quality)
        result.timings = timer.summary()
        step(1.0, "done")
        return EncodedFusion(data=data, format=fmt, result=result, target=target_img)

    def _fuse(self, source, target_img: np.ndarray, params: FusionParams, timer: "_Timer",
              sources: Mapping[int, Any] | None = None) -> FusionResult:
        if source is None and not sources:
            raise ConfigError("a source face or a face mapping is needed")
        with timer.stage("detect"):  # includes decoding the source, unless it is cached
            sources_by_face = self.prepare_sources(sources or {}, params)
            src = None if source is None else self.prepare_source(source, params.source_face_index, params.threshold)
            detection = self.detector.detect(target_img, threshold=params.threshold)
        faces = detection.faces
        if sources_by_face:  # a mapping names its faces; all_faces and face_index are not used
            chosen = sorted(sources_by_face)
        else:
            chosen = list(range(len(faces))) if params.all_faces else list(params.face_indices)
        missing = [i for i in chosen if i >= len(faces)]
        if not faces or missing:
            raise NoFaceError("target", requested=missing[0] if faces else None, found=len(faces))

        h, w = target_img.shape[:2]
        out_w, out_h = output_size(w, h, params.resolution)
        factor = out_w / w
        notes = [enlargement_note(w, h, out_w, out_h)] if factor > ENLARGE_NOTE_FACTOR else []
        with timer.stage("paste"):
            output = resize_frame(target_img, (out_w, out_h))
            if output is target_img:
                output = target_img.copy()
        used: list[FaceUsed] = []
        scaled = {index: faces[index].scaled(factor) for index in chosen}  # in output pixels
        with timer.stage("detect"):  # hands in front of a face stay (their colour is the skin's)
            hands = _hands_near(output, list(scaled.values()))
        for index, face in scaled.items():
            face_source = sources_by_face.get(index, src)
            before = face_patch(output, face.landmarks)
            roi, _, kept = self._fuse_face_into(output, face, face_source, params, timer, work_face_px=STILL_WORK_FACE,
                                                hands=hands)
            used.append(FaceUsed(index=index, face=face, roi=roi, kept=kept))
            # a face turned beyond what the engine renders well: say so, with the angle
            turn = pose_notes(fit_pose(face_source.face.landmarks).yaw, fit_pose(face.landmarks).yaw)
            notes += [n for n in turn + covered_source_notes(kept) if n not in notes]
            # and whatever the cause, a face that fusion left nearly as it was
            notes += little_change_note(changed_share(before, output, face.landmarks), params.ratio,
                                        index if len(chosen) > 1 else None)
        return FusionResult(image=output, faces=used, target_faces_found=len(faces), params=params,
                            timings=timer.summary(), notes=notes)

    def _fuse_face_into(self, output: np.ndarray, face: Face, src: SourceFace, params: FusionParams,
                        timer: "_Timer", light: Any = None, light_keep: float = 0.0,
                        work_face_px: int = 0, padding: float | None = None,
                        hands: list[np.ndarray] | None = None, lift_enlarged: bool = True) -> tuple[ROI, Any, dict[str, float]]:
        """Fuse one face of `output` (its landmarks in output pixels) in place; the ROI used,
        the engine's light state for the next frame (engines that keep none: None) and the
        share of the face each of its rules kept the target's (FusedFace.kept).

        `work_face_px` > 0: a face larger than that is fused on its ROI shrunk to that face
        size, and only the change fusion made is enlarged back onto the full-size ROI, so
        the target's finest detail stays and the cost stops growing with the face (video).
        `lift_enlarged`: the enlarged face's finest band is lifted to the frame's crispness
        (_with_change; about 20 ms on a 640x480 camera's 370-px ROI, which live does without).
        `padding`: the ROI's margin instead of params.padding. `hands`: the hands found in
        `output` (landmarks in its pixels, hands.find_hands): those in front of this face stay
        the target's."""
        with timer.stage("roi"):
            roi = plan_roi(face, output.shape[1], output.shape[0], params.padding if padding is None else padding)
            if roi.width < 2 or roi.height < 2:  # a followed face gone past the frame's edge: nothing to fuse
                return roi, light, {}
            roi_img = output[roi.slices]
            lms = face.landmarks - roi.offset
            work, lms = _work_scale(roi_img, lms, work_face_px / face.size if 0 < work_face_px < face.size else 1.0)
        with timer.stage("engine"):
            fused = self.engine.fuse(src, work, lms, params.ratio, light=light, light_keep=light_keep)
        if self.enhancer is not None:
            with timer.stage("enhance"):
                fused = self.enhancer.enhance(fused, params.enhancer_blend, params.enhancer_weight)
        with timer.stage("blend"):
            fused_roi = compose(fused, params.mode, params.smoothing, params.brightness,
                                params.contrast, params.saturation, frame=work)
            kept = fused.kept
            if hands is not None:
                k = work.shape[1] / max(roi_img.shape[1], 1)  # ROI px -> work px
                fused_roi, kept = _hands_in_front(fused_roi, work, lms, fused, [(p - roi.offset) * k for p in hands])
        with timer.stage("paste"):
            output[roi.slices] = (fused_roi if work is roi_img else
                                  _with_change(roi_img, work, fused_roi, fused if lift_enlarged else None))
        return roi, fused.light, kept

    def fuse_frame(self, frame: np.ndarray, faces: Sequence[tuple[Face, SourceFace, Any]],
                   params: FusionParams | None = None, timings: dict[str, float] | None = None,
                   light_keep: float = 0.0, work_face_px: int = 0, lift_enlarged: bool = True) -> tuple[np.ndarray, list[Any]]:
        """One video frame (RGB uint8, already at output size) with each given face fused
        from its prepared source: (face, source, light) triples, `light` being the state the
        previous frame's call returned for that face (None at first). The landmarks come from
        the caller (a video tracker smooths them over time), so nothing is detected here; the
        frame is not modified. Returns the fused frame and each face's light state, of which
        the next frame mixes in `light_keep`. Stage times are added to `timings` if given.
        `work_face_px`: faces larger than this are fused at that size (see _fuse_face_into);
        `lift_enlarged`: their enlarged change gets the frame's crispness back (_with_change)."""
        params = params or self.params()
        timer = _Timer()
        output = frame.copy()
        padding = self._frame_padding(params)
        lights = [self._fuse_face_into(output, face, src, params, timer, light, light_keep, work_face_px, padding,
                                       lift_enlarged=lift_enlarged)[1]
                  for face, src, light in faces]
        if timings is not None:
            for stage, seconds in timer.times.items():
                timings[stage] = timings.get(stage, 0.0) + seconds
        return output, lights

    def _frame_padding(self, params: FusionParams) -> float | None:
        """A video frame's ROI margin: the smallest (roi.MIN_MARGIN) where nothing beyond the
        face's mask can change, i.e. an engine that says so (`tight_roi`) in the normal mode
        without an enhancer (blend and overlay reach past the mask, a neural model's aligned
        crop past the face box); else params.padding (None). On the talking head at 720p the
        default 0.2 cost 22 % more per frame than 0.1 and changed no pixel beyond resampling
        (mean 0.14 levels, at the lips' and lashes' edges)."""
        tight = self.engine.tight_roi and params.mode == "normal" and self.enhancer is None
        return min(params.padding, MIN_MARGIN) if tight else None

    def fuse_video(self, source, video, out, progress: Callable[[int, int], None] | None = None,
                   sources: Mapping[int, Any] | None = None, **params: Any) -> dict:
        """Fuse `source`'s face into every frame of the clip `video` and write `out`
        (see facefuse.video.fuse.fuse_video for the options); returns its report."""
        from .video.fuse import fuse_video

        return fuse_video(self, source, video, out, progress=progress, sources=sources, **params)


def covered_source_notes(kept: Mapping[str, float]) -> list[str]:
    """What the engine left out of the source face (its glasses frames, a hand in front of
    it, a hat's brim over most of it, more than half of it found to be no skin of its own:
    the shares its report gives, `kept`), said, so a result without them is not a surprise."""
    notes = []
    if kept.get("source_frames"):
        notes.append("the source's glasses frames were painted out (a source's glasses are not pasted)")
    if kept.get("source_hands"):
        notes.append(f"a hand covers {kept['source_hands']:.0%} of the source face: the target's own skin "
                     "shows there (a source photo without the hand gives a closer likeness)")
    if kept.get("source_clear", 0.0) > HIDDEN_NOTE_SHARE:
        notes.append(f"on {kept['source_clear']:.0%} of the source face no skin of its own was found (hair, a hand, "
                     "hard shadow or background across it): the target's own skin shows there (a source photo with "
                     "the face clear and evenly lit gives a closer likeness)")
    if kept.get("source_uncovered"):
        notes.append(f"something reaching over the source face from outside it (a hat's brim) covers "
                     f"{kept['source_uncovered']:.0%} of it: the target's own skin shows there (a source photo with "
                     "the face uncovered gives a closer likeness)")
    return notes


def enlargement_note(w: int, h: int, out_w: int, out_h: int) -> str:
    return (f"the output ({out_w}x{out_h}) is the target ({w}x{h}) enlarged {out_w / w:.1f}x: "
            f"it holds no more detail than the target")


def _work_scale(roi_img: np.ndarray, lms: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
    """The ROI and its landmarks shrunk by k (pixel centres kept), or as they are at k = 1."""
    if k >= 1.0:
        return roi_img, lms
    h, w = roi_img.shape[:2]
    size = (max(8, round(w * k)), max(8, round(h * k)))
    scale = np.float32([size[0] / w, size[1] / h])
    return resize_frame(roi_img, size), ((lms + 0.5) * scale - 0.5).astype(np.float32)


def _hands_near(image: np.ndarray, faces: Sequence[Face]) -> list[np.ndarray]:
    """The hands in `image` (landmarks in its pixels), looked for in the whole image and in
    each face's surroundings: the hand model misses some hands at one of the two scales (a
    hand over a face seen whole in one photo, only around the face in another)."""
    k = min(1.0, HAND_SIDE / max(image.shape[:2]))  # the model sees 224 px: a smaller copy loses nothing
    found = [p / k for p in find_hands(resize_frame(image, (round(image.shape[1] * k), round(image.shape[0] * k))))]
    for face in faces:
        around = plan_roi(face, image.shape[1], image.shape[0], HAND_MARGIN)
        found += [p + around.offset for p in find_hands(np.ascontiguousarray(image[around.slices]))]
    return found


def _hands_in_front(fused_roi: np.ndarray, target_roi: np.ndarray, lms: np.ndarray, fused: FusedFace,
                    hands: list[np.ndarray]) -> tuple[np.ndarray, dict[str, float]]:
    """The fused ROI with the target's own pixels where a hand lies in front of its face (a
    hand has the skin's colour, so the engine's occluder rules pasted the face over it), and
    the face's kept-shares with the hands' added (`target_hands`)."""
    mask = hands_in_front(hands, target_roi.shape[:2], eye_distance(lms), REGION_TUNING.finger_width)
    if mask is None:
        return fused_roi, {**fused.kept, "target_hands": 0.0}
    soft = cv2.GaussianBlur(mask, (0, 0), max(0.7, 0.01 * fused.face_size))[:, :, None]
    blended = fused_roi.astype(np.float32)
    blended += soft * (target_roi.astype(np.float32) - blended)
    out = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    face = fused.mask > 0.5
    share = float(soft[:, :, 0][face].mean()) if face.any() else 0.0
    return out, {**fused.kept, "target_hands": round(share, 4)}


def _with_change(roi_img: np.ndarray, work: np.ndarray, fused_work: np.ndarray,
                 fused: FusedFace | None = None) -> np.ndarray:
    """The full-size ROI plus the change fusion made at the work scale, enlarged; with the
    `fused` face's alpha and mask, the enlarged face's finest band lifted to the frame's
    crispness again (sharpness.lift: the enlargement softens what the work scale matched;
    the band is the fused face's, not the result's, which holds the target's own finest
    detail under the face)."""
    # OpenCV's saturating arithmetic: numpy's float copies of the full-size ROI cost 50 ms at 4096
    change = cv2.subtract(fused_work, work, dtype=cv2.CV_16S).astype(np.float32)
    h, w = roi_img.shape[:2]
    change = cv2.resize(change, (w, h), interpolation=cv2.INTER_LINEAR)
    out = cv2.add(roi_img, change, dtype=cv2.CV_8U)
    if fused is None or fused.alpha is None:
        return out
    alpha, weight = (cv2.resize(x, (w, h), interpolation=cv2.INTER_LINEAR)
                     for x in (fused.alpha, fused.alpha * lift_weight(fused)))
    region = alpha > REGION
    box = lifted_box(weight, region)  # (the lift reads and writes no more)
    if box is None:
        return out
    img = out[box].astype(np.float32)  # as blended already: lifted where it was mostly the fused face
    # the fused face's luma enlarged (one channel: the luma of the enlarged face, as both are linear)
    enlarged = cv2.resize(cv2.transform(fused_work.astype(np.float32), LUMA[None, :]), (w, h),
                          interpolation=cv2.INTER_LINEAR)
    lifted = lift(img, roi_img[box].astype(np.float32), None, None, weight[box], region[box], enlarged[box])
    if lifted is not img:
        out[box] = np.clip(lifted + 0.5, 0, 255).astype(np.uint8)
    return out


def _content_key(source: ImageSource) -> str:
    """A digest of the image's content (not its name: a file can change under the same name)."""
    h = hashlib.blake2b(digest_size=16)
    if isinstance(source, DecodedImage):
        for arr in (source.rgb, source.alpha if source.alpha is not None else np.zeros(0, np.uint8)):
            arr = np.ascontiguousarray(arr)
            h.update(repr((arr.shape, arr.dtype.str)).encode())
            h.update(memoryview(arr).cast("B"))
    elif isinstance(source, np.ndarray):
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
