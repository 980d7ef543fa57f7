"""ClassicalEngine: `fuse()` as a short list of named stages.

1. geometry: both meshes get a pose (pose.py); the result's geometry is the target's with
   its inner points moved toward the source's shape (shape.py);
2. warp: one dense map per texture (warp.py), the target's triangles drawn far to near, a
   turned source's hidden side completed from its mirrored visible side (visibility.py);
3. what to keep: each rule that keeps the target's pixels returns a named mask, and
   `compose_kept` combines them in one place (kept.py; the rules in occlusion.py, strands.py,
   visibility.py);
4. light and detail: the target's light and crispness on the source's face, and the fused
   face's tone where the target's skin fills for the source's (light.py);
5. finish: the textures mixed by `ratio`, a closed target eye kept (eyes.py), the target's
   glasses frames laid back on top (glasses.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ... import mesh, pose
from ...faces import Face, FusedFace, SourceFace
from ...masks import face_region_mask, feather, skin_of
from .. import Engine
from .eyes import eyes_mask, keep_target_eyes
from .glasses import paint_out_frames, target_frames
from .kept import KeptMasks, compose_kept, kept_report
from .labels import label_hands, label_source, warped_prepared
from .light import LightField, borrow_fine_skin_texture, filled_tone, match_detail, transfer_light_over_time
from .occlusion import source_occluders, unoccluded
from .shape import result_geometry
from .source import crop_source, shrunk_source, source_at_scale, source_pose
from .tuning import DEFAULT_TUNING, ClassicalTuning, ramp
from .visibility import complete_by_symmetry, near_half_first, opaque_weights, source_weights, target_trust, turned, unstretched
from .warp import IDENTITY, Warped, dense_maps, nearby_triangles, vertex_fields
from .workscale import WorkScale


@dataclass
class FaceGeometry:
    """Stage 1: the two faces' landmarks and poses, and the result's geometry (ROI px)."""

    t_lms: np.ndarray
    s_lms: np.ndarray
    s_pose: pose.Pose
    t_pose: pose.Pose
    geom: np.ndarray  # the result's landmarks
    eye: float  # the target's eye distance, px: the unit of every length on the face
    face_size: float
    align: np.ndarray  # 2x3 source px -> ROI px (a similarity on the rigid points)
    source_scale: float  # > 1: the source is enlarged
    source_turned: float  # 0..1 (Visibility.turned)
    source_profile: float  # 0..1 (Visibility.profile_yaw)


@dataclass
class SourceFinds:
    """What the rules found on the source's own pixels, on one frame of a video track (or at
    its own pose: ClassicalEngine.own_finds), at that frame's work scale: `masks`, its occluders
    (occlusion.source_occluders, softened outward by one work pixel) and, on a track, its two skin agreements; with
    the result's geometry there (`geom`, work pixels) and the landmarks of the source they
    were found on, and the target's pose then. They are properties of the source's pixels,
    so the track's next frames read them through their own triangles instead of finding
    them again (about 6 ms a frame at 640x480), and a strand cannot come and go from frame
    to frame; they are found again once the target has turned away from that frame's pose
    (a turn, a nod or a tilt: the angle between the two head rotations) by more than
    Visibility.turned's lower bound (the sides it showed then are not the ones it shows
    now), keeping what these found covering the source (ClassicalEngine.what_to_keep)."""

    geom: np.ndarray
    masks: np.ndarray
    source_lms: np.ndarray
    rotation: np.ndarray  # the target's head rotation (pose.Pose.rotation)

    def of(self, source_lms: np.ndarray) -> bool:
        """Whether they were found on the source with these landmarks."""
        return np.array_equal(self.source_lms, source_lms)

    def near(self, rotation: np.ndarray, tuning: ClassicalTuning) -> bool:
        """Whether a target whose head has the rotation `rotation` is near the pose they were found at."""
        return pose.angle_between(self.rotation, rotation) <= tuning.visibility.turned[0]


@dataclass
class TrackState:
    """What a video track hands from one frame's fusion to the next (FusedFace.light): this
    frame's light (light.LightField), what was found on the source's pixels on its first,
    the target's head rotation in this frame, and whether the track's face has shown
    glasses frames (then one ringed eye finds them: glasses.target_frames' `eyes_ringed`)."""

    light: LightField | None
    source: SourceFinds | None
    rotation: np.ndarray | None = None
    glasses: bool = False


def softened_outward(found: np.ndarray) -> np.ndarray:
    """What the rules found on the source (work scale, 0..1) softened by one work pixel
    outward only: a find's own edge stays out in full. Softened both ways, its edge pixels
    were half pasted, and a lock's outermost hairs, finer than a work pixel, came through
    as a line down the cheek (deepface_img3.jpg, docs/cases.md S9)."""
    return np.maximum(found, cv2.GaussianBlur(found, (0, 0), 1.0))


class ClassicalEngine(Engine):
    """The default engine: a dense landmark warp of the source face onto the target's
    geometry, with the target's light, occluders and eyes kept. CPU only, no model file."""

    name = "classical"
    # the result changes nothing outside the face's mask (normal mode), so a video may fuse
    # it on the smallest ROI (pipeline.Fuser.fuse_frame's tight_roi)
    tight_roi = True

    def __init__(self, settings=None, tuning: ClassicalTuning = DEFAULT_TUNING):
        self.settings = settings
        self.tuning = tuning
        self._scaled: list = []  # the last shrunk source crops (source.source_at_scale)

    def prepare_source(self, image: np.ndarray, face: Face, alpha: np.ndarray | None = None) -> SourceFace:
        source = crop_source(image, face, alpha)
        paint_out_frames(source, self.tuning.frames)
        if self.tuning.labels.hands:
            label_hands(source, self.tuning.labels)
        if self.tuning.labels.source:
            label_source(source, self.tuning)
        self.own_finds(source)  # now, not on a live stream's first frame
        return source

    def fuse(self, source: SourceFace, target_roi: np.ndarray, target_landmarks: np.ndarray, ratio: float,
             light: TrackState | None = None, light_keep: float = 0.0) -> FusedFace:
        """`light`, `light_keep`: a video track's state from its previous frame (TrackState)
        and the share of its light kept (see light.transfer_light_over_time); the result's
        `light` is this frame's state."""
        previous = light or TrackState(None, None)
        g = self.geometry(source, target_landmarks, ratio)
        # this source's finds on the track, at the pose they were made at; reused near that pose
        earlier = previous.source if previous.source is not None and previous.source.of(source.face.landmarks) else None
        carried = earlier if earlier is not None and earlier.near(g.t_pose.rotation, self.tuning) else None
        w = self.warp(source, target_roi, g, ratio, earlier or self.own_finds(source),  # none yet: the source's own
                      glasses=previous.glasses)
        work = WorkScale(target_roi.shape[:2], g.eye, self.tuning.work)
        kept, found = self.what_to_keep(w, g, work, source, reuse=carried is not None)
        region, shown, filled = compose_kept(kept)
        lit, field, alpha, fill = self.light_and_detail(w, g, kept, shown, filled, region, work, previous.light,
                                                        light_keep)
        state = TrackState(field, carried or found, g.t_pose.rotation, previous.glasses or w.target_frames is not None)
        fused = self.finish(w, g, kept, region, shown, lit, state, alpha, ratio, fill)
        # and what was left out of the source when it was prepared: its glasses frames (painted
        # out, glasses.py) and its hands (labels.label_hands), as shares of its face
        fused.kept.update(source_frames=source.prepared.get("frames_share", 0.0),
                          source_hands=source.prepared.get("hands_share", 0.0))
        return fused

    def own_finds(self, source: SourceFace) -> SourceFinds | None:
        """What the rules find on the source fused onto itself (its crop shrunk to the work scale), once, when it is
        prepared (None: nothing); kept by every fusion as a track's earlier finds: one missed at the target's pose stays out."""
        if "own_finds" not in source.prepared:
            eye = mesh.eye_distance(source.face.landmarks[: mesh.N_MESH])
            small = shrunk_source(source, WorkScale(source.image.shape[:2], eye, self.tuning.work).scale)
            g = self.geometry(small, small.face.landmarks, 1.0)
            w = self.warp(small, small.image, g, 1.0)
            _, found = self.what_to_keep(w, g, WorkScale(small.image.shape[:2], g.eye, self.tuning.work), small, own_pose=True)
            source.prepared["own_finds"] = found if found.masks[:, :, 0].any() else None
        return source.prepared["own_finds"]

    def warm_up(self) -> None:
        """OpenCV builds its float Lab tables on the first such conversion (110-160 ms here;
        WorkScale.lab), and the mesh's per-triangle tables are made on first use: a live
        stream's first fused frame took 171 ms against 34-37 with them made beforehand."""
        cv2.cvtColor(np.zeros((1, 1, 3), np.float32), cv2.COLOR_RGB2Lab)
        pose.frontal_facing()
        nearby_triangles()

    def next_state(self, kept: TrackState | None, finished: TrackState | None) -> TrackState | None:
        """The finished frame's light, with the source finds the track holds already wherever
        they hold for the finished frame's source and pose: frames fused side by side each
        start from the state of the frame `in_flight` before them, so at a track's start (or
        after a turn) each finds its own, and without this the frames would take the finds in
        turn (an even frame the first's, an odd one the second's) for the whole track. Glasses
        either frame showed stay shown."""
        if kept is None or finished is None:
            return finished
        source = finished.source
        if (kept.source is not None and source is not None and kept.source.of(source.source_lms)
                and kept.source.near(finished.rotation, self.tuning)):
            source = kept.source
        return TrackState(finished.light, source, finished.rotation, kept.glasses or finished.glasses)

    def geometry(self, source: SourceFace, target_landmarks: np.ndarray, ratio: float) -> FaceGeometry:
        t_lms = target_landmarks[: mesh.N_MESH].astype(np.float32)
        s_lms = source.face.landmarks[: mesh.N_MESH].astype(np.float32)
        s_pose, t_pose = source_pose(source), pose.fit_pose(t_lms)
        align = mesh.similarity(s_lms[mesh.RIGID], t_lms[mesh.RIGID])
        vis = self.tuning.visibility
        return FaceGeometry(
            t_lms=t_lms, s_lms=s_lms, s_pose=s_pose, t_pose=t_pose,
            geom=result_geometry(s_lms, t_lms, s_pose, t_pose, ratio, self.tuning.geometry),
            eye=mesh.eye_distance(t_lms), face_size=float(np.sqrt(np.prod(t_lms.max(0) - t_lms.min(0)))),
            align=align, source_scale=float(np.sqrt(abs(np.linalg.det(align[:, :2])))),
            source_turned=turned(s_pose, vis.turned), source_profile=turned(s_pose, vis.profile_yaw))

    def warp(self, source: SourceFace, target_roi: np.ndarray, g: FaceGeometry, ratio: float,
             earlier: SourceFinds | None = None, glasses: bool = False) -> Warped:
        """One dense map per texture and one remap each, drawn far to near; a source
        triangle the source photo hides takes its mirror triangle's texture; per-vertex
        weights ride along as vertex fields; the track's `earlier` finds on the source through
        one more map, on the coarse grid (Warped.source_finds); the target's glasses frames
        through the target's (`glasses`: the track has shown them, TrackState)."""
        t, vis = self.tuning, self.tuning.visibility
        h, w = target_roi.shape[:2]
        src_img, src_alpha, s_pts, to_src = source_at_scale(source, g.source_scale, g.align, t.warp, self._scaled)
        t_facing = pose.triangle_facing(g.t_lms, g.t_pose)
        own = source_weights(src_img, s_pts, g.s_pose, g.source_turned, t)
        apart = float(ramp(np.float64(abs(g.s_pose.yaw - g.t_pose.yaw)), vis.turned))
        s_facing = pose.triangle_facing(g.s_lms, g.s_pose)
        either_profile = max(g.source_profile, turned(g.t_pose, vis.profile_yaw))
        direct, mirrored = near_half_first(*unstretched(own, s_facing, t_facing, apart, vis, either_profile), s_facing,
                                           turned(g.s_pose, vis.near_half_turned), vis)
        t_seen = 1.0 - turned(g.t_pose, vis.turned) * (1.0 - target_trust(t_facing, vis))
        sets = [(s_pts, to_src), (g.t_lms, IDENTITY),
                vertex_fields(np.stack([np.ones(mesh.N_MESH), t_seen], 1), (0.0, 0.0))]
        # a frontal, opaque source needs no mirror texture: skip its map
        completing = bool((direct < 0.98).any()) or source.alpha is not None
        if completing:
            sets += [(s_pts[mesh.mirror()], to_src), vertex_fields(np.stack([direct, mirrored], 1), (1.0, 0.0))]
        if earlier is not None:  # on the coarse grid: the mask is smooth
            sets.append((earlier.geom, mesh.similarity(g.geom[mesh.RIGID], earlier.geom[mesh.RIGID])))
        maps = dense_maps((h, w), g.geom, sets, order=pose.drawing_order(t_facing, g.t_pose), grid=t.warp,
                          coarse=int(earlier is not None))
        finds = None if earlier is None else np.atleast_3d(cv2.remap(earlier.masks, *maps.pop(), cv2.INTER_LINEAR,
                                                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0.0))
        (sx, sy), (tx, ty), (drawn, target_seen) = maps[:3]
        warped = cv2.remap(src_img, sx, sy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        not_skin = warped_prepared(source, "not_skin", src_img.shape[:2], sx, sy)
        hands = warped_prepared(source, "hands", src_img.shape[:2], sx, sy)
        valid = np.ones((h, w), np.float32)
        if completing:
            (mx, my), (d, m) = maps[3:]
            warped_mirror = cv2.remap(src_img, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT).astype(np.float32)
            d, m = np.clip(d, 0, 1), np.clip(m, 0, 1)
            if src_alpha is not None:
                d, m = d * opaque_weights(src_alpha, sx, sy, g.eye, t), m * opaque_weights(src_alpha, mx, my, g.eye, t)
            if not_skin is not None:  # the labels are completed with the texture, from the same side
                mirrored = warped_prepared(source, "not_skin", src_img.shape[:2], mx, my)
                not_skin = complete_by_symmetry(not_skin[:, :, None], mirrored[:, :, None], d, m, vis)[0][:, :, 0]
            if hands is not None:
                mirrored = warped_prepared(source, "hands", src_img.shape[:2], mx, my)
                hands = complete_by_symmetry(hands[:, :, None], mirrored[:, :, None], d, m, vis)[0][:, :, 0]
            warped, valid = complete_by_symmetry(warped, warped_mirror, d, m, vis)
        tgt = target_roi.astype(np.float32)
        base = tgt if ratio == 0 else cv2.remap(tgt, tx, ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        # the target's glasses frames, found on its own pixels and carried by its map: found on
        # the re-shaped target, a thin rim blurred by the remap broke at ratio 1.0, and the
        # frames were pasted over (simswap_specific2.png as pair 12's target)
        frames = target_frames(target_roi, g.t_lms, g.eye, t.frames, eyes_ringed=1 if glasses else 2)
        if frames is not None and ratio != 0:
            frames = cv2.remap(frames, tx, ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        return Warped(source=warped, base=base, drawn=drawn, target_seen=target_seen, valid=valid, maps=(sx, sy),
                      source_not_skin=not_skin, source_finds=finds, source_hands=hands, target_frames=frames)

    def what_to_keep(self, w: Warped, g: FaceGeometry, work: WorkScale, source: SourceFace, reuse: bool = False,
                     own_pose: bool = False) -> tuple[KeptMasks, SourceFinds | None]:
        """Each rule's mask (see KeptMasks): hair, hands and brims stay where they are, and
        a source's strands, patches and unusable sides give way to the target's skin. With
        them, what was found on the source's pixels here, for a video's next frames (None:
        the track's earlier finds were reused, `w.source_finds`). Finds made again at a new
        pose keep what the earlier ones found covering the source as well (the source does
        not change: a strand the rules see at one pose and miss at another stays out).
        `own_pose`: the source fused onto itself (own_finds)."""
        t = self.tuning
        shape = w.base.shape[:2]
        source_uncovered: np.ndarray | float = 1.0
        outline = face_region_mask(g.geom, shape, cut_mouth=True)
        skin = skin_of(outline, g.geom)
        carried = w.source_finds
        if reuse:
            occluders = np.clip(cv2.resize(carried[:, :, 0], shape[::-1], interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
            agreement = cv2.resize(carried[:, :, 1:], work.size, interpolation=cv2.INTER_LINEAR)
            uncovered, light_trust, _ = unoccluded(w.source, w.base, skin, g.geom, g.eye, work, t.occlusion, agreement)
            found = None
        else:  # the source fused onto itself (own_pose) needs only its finds: no target to test
            tested = None if own_pose else unoccluded(w.source, w.base, skin, g.geom, g.eye, work, t.occlusion)
            uncovered, light_trust, agreement = tested or (1.0, 1.0, None)
            small, cover = source_occluders(w.source, skin, g.geom, g.eye, g.source_turned, work, t, t.light.sigma,
                                            w.source_not_skin, own_pose)
            small = softened_outward(small)
            if carried is not None:
                small = np.maximum(small, cv2.resize(carried[:, :, 0], work.size, interpolation=cv2.INTER_LINEAR))
            occluders = np.clip(work.up(small), 0.0, 1.0)
            if cover.any():  # its own rule (and in what the track carries, with the rest)
                cover = cv2.GaussianBlur(cv2.dilate(cover, np.ones((3, 3), np.uint8)), (0, 0), 1.0)
                source_uncovered = 1.0 - np.clip(work.up(cover), 0.0, 1.0)
                small = np.maximum(small, cover)
            found = SourceFinds(geom=work.on_grid(g.geom), masks=np.dstack([small] if own_pose else [small, agreement]),
                                source_lms=source.face.landmarks, rotation=g.t_pose.rotation)
        if w.source_hands is not None:  # a source's hand: never pasted (labels.label_hands)
            occluders = np.maximum(occluders, np.clip(w.source_hands, 0.0, 1.0))
        return KeptMasks(outline=outline, skin=skin, uncovered=uncovered,
                         light_trust=light_trust, target_drawn=w.drawn, target_facing=w.target_seen,
                         source_usable=w.valid, source_clear=1.0 - occluders, source_uncovered=source_uncovered), found

    def light_and_detail(self, w: Warped, g: FaceGeometry, kept: KeptMasks, shown: np.ndarray, filled: np.ndarray,
                         region: np.ndarray, work: WorkScale, light: LightField | None,
                         light_keep: float) -> tuple[np.ndarray, LightField | None, np.ndarray, tuple | None]:
        """(lit source, this frame's light, the blend's alpha, the fill's tone): the target's
        light on the source's texture, learned on skin both faces show, and the target's
        crispness; where the target's skin fills for the source's (`filled`, on skin: a kept
        target eye keeps its colour), the tone the fused face has around it, learned where
        the light is (light.filled_tone: a box and the tone in it; None: nothing filled)."""
        t = self.tuning
        learned = kept.skin * kept.light_trust * (shown > 0.5)
        lit, field = transfer_light_over_time(w.source, w.base, learned, g.eye,
                                              eyes_mask(g.geom, w.base.shape[:2], g.eye, t.eyes),
                                              anchor=g.geom[mesh.RIGID], previous=light, keep=light_keep, work=work,
                                              tuning=t.light)
        lit = borrow_fine_skin_texture(lit, w.base, kept.skin, g.source_scale, t.light)
        alpha = feather(region, g.face_size)  # the blend's alpha too (FusedFace.alpha)
        lit = match_detail(lit, w.base, alpha > 0.95, t.light)
        return lit, field, alpha, filled_tone(lit, w.base, learned, filled, kept.skin, g.eye, work, t.light)

    def finish(self, w: Warped, g: FaceGeometry, kept: KeptMasks, region: np.ndarray, shown: np.ndarray,
               lit: np.ndarray, state: TrackState, alpha: np.ndarray, ratio: float,
               fill: tuple | None = None) -> FusedFace:
        """The textures mixed by `ratio` where the source shows, and the fill's tone
        (light_and_detail) where the target's skin fills for it; a target eye much more
        closed than the source's stays the target's; the target's frames go on top."""
        t = self.tuning
        fused = w.base + (ratio * shown)[:, :, None] * (lit - w.base)
        if fill is not None:
            box, tone = fill
            fused[box] += ratio * tone
        eyes = keep_target_eyes(fused, w.base, g.geom, g.t_lms, g.s_lms, g.eye, t.eyes,
                                at_least=t.eyes.profile_keep * g.source_profile)
        frames = w.target_frames
        return FusedFace(image=fused, base=w.base, mask=region, landmarks=g.geom, face_size=g.face_size, light=state,
                         overlay=frames, alpha=alpha, kept=kept_report(kept, eyes, frames), skin=kept.skin)
