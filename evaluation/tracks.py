"""Face tracks of real videos, as syncnet_python's run_pipeline.py builds them (EVALUATION.md section 4).

    detector = FaceAlignment(device="auto")
    for track in face_tracks("clip.mp4", detector, progress=True):  # [] when the video has none
        crops = track_crops("clip.mp4", track)      # 224x224 BGR uint8, one per frame of the track
        audio = track_audio(samples_int16, track)   # the same span of the 16 kHz audio

The steps of the reference (joonson/syncnet_python, with scenedetect 0.5.1 as
its requirements.txt pins), each a function here:

1. Frames at 25 fps as ffmpeg writes them to JPEG at -qscale:v 2 (`jpeg_frames`).
2. One pass over them (`detect_shots_and_faces`): PySceneDetect's ContentDetector
   statistics for shot cuts (`ShotCuts`), and S3FD faces on each frame scaled
   by 0.25, kept above confidence 0.9 and thinned by NMS at IoU 0.1, in
   full-frame coordinates. Only boxes are kept, never frames.
3. Per shot of at least 100 frames, the greedy IoU tracker (`greedy_tracks`);
   tracks of more than 100 detections, boxes interpolated over the missing
   frames, kept when their mean width or height exceeds 100 px (`make_track`).
4. Crops (`track_crops`): from the median-smoothed half side s and centre of the
   box, a 2.8 s square window reaching s above the centre and 1.8 s below it,
   grey 110 where it leaves the frame, resized to 224x224; audio of the same span.

Where this differs from the reference:
- Its frames come from an intermediate MPEG-4 AVI (ffmpeg -qscale:v 2 -r 25),
  re-read as JPEGs; here ffmpeg resamples to 25 fps and writes the JPEGs in one
  step, and the shot cuts are measured on those JPEG frames (the reference's
  scenedetect decoded the AVI with OpenCV). Pixels differ by the AVI's coding loss.
- Its detector is S3FD.pytorch's network (fc6 dilated 6, a ceil-mode pool)
  with `sfd_face.pth`; Wav2Lip's `s3fd.pth` is the original Caffe S3FD,
  converted: another network and other weights. Each network is given each
  colour minus its own mean (B 104, G 117, R 123), in the channel order its
  weights expect (see `detection_input`). Its first NMS (IoU 0.3) counts box sides
  without the +1 that Wav2Lip's does; boxes that near the threshold are rare.
- Its crops go through an XVID AVI and JPEGs again before SyncNet; these are the
  crops before that coding.
"""
from dataclasses import dataclass

import numpy as np

from evaluation.lse import SAMPLE_RATE  # syncnet_python's audio: 16 kHz mono

# PySceneDetect 0.5.1 VideoManager.set_downscale_factor(): (minimum frame width, pixel step).
# syncnet_python pins 0.5.1 (0.5.5 still has this table); from 0.6 the factor is width // 256.
SCENE_DOWNSCALE = ((3200, 12), (2100, 8), (1700, 6), (1200, 5), (900, 4), (600, 3), (400, 2))


@dataclass(frozen=True)
class TrackOptions:
    """run_pipeline.py's settings: its argparse defaults and the constants in its code."""
    frame_rate: int = 25  # --frame_rate: the video is resampled to this
    jpeg_qscale: int = 2  # ffmpeg -qscale:v of the frames
    facedet_scale: float = 0.25  # --facedet_scale: frames are scaled by this for detection
    face_confidence: float = 0.9  # detect_faces(conf_th=): faces must score above this
    face_nms_iou: float = 0.1  # the S3FD wrapper's last NMS: drop a face overlapping a better one by more
    scene_threshold: float = 30.0  # ContentDetector() defaults: cut where the HSV change reaches this
    scene_min_len: int = 15  # ... and at least this many frames after the previous cut
    min_track: int = 100  # --min_track: shots of fewer frames skipped; tracks need more detections
    num_failed_det: int = 25  # --num_failed_det: most frames between a track's consecutive detections
    track_iou: float = 0.5  # track_shot's iouThres: a face joins a track above this IoU with its last box
    min_face_size: float = 100  # --min_face_size: a track's mean box width or height must exceed this
    crop_scale: float = 0.4  # --crop_scale
    smooth_kernel: int = 13  # medfilt kernel over the track's box sizes and centres
    pad_value: int = 110  # grey around the frame where a crop leaves it
    crop_size: int = 224  # SyncNet's input side


DEFAULT_OPTIONS = TrackOptions()


@dataclass
class Track:
    """One face track: `frames` (N,) consecutive frame indices, `boxes` (N, 4) float x1, y1, x2, y2."""
    frames: np.ndarray
    boxes: np.ndarray

    def __len__(self):
        return len(self.frames)


# ---- shots ----------------------------------------------------------------------------------

def scene_downscale_factor(width):
    """The pixel step scenedetect 0.5.1 takes in both directions for frames `width` pixels wide."""
    for min_width, step in SCENE_DOWNSCALE:
        if width >= min_width:
            return step
    return 1


def content_value(prev_hsv, hsv):
    """ContentDetector's `content_val`: mean |change| of H, of S and of V over the pixels, averaged.

    Integer sums divided by the pixel count per channel, then (dH + dS + dV) / 3:
    the reference's arithmetic, so values equal to the last bit.
    """
    pixels = hsv.shape[0] * hsv.shape[1]
    diff = np.abs(hsv.astype(np.int32) - prev_hsv.astype(np.int32))  # (H, W, 3)
    d_h, d_s, d_v = (int(total) / float(pixels) for total in diff.reshape(-1, 3).sum(axis=0))
    return (d_h + d_s + d_v) / 3.0


class ShotCuts:
    """Shot cuts as PySceneDetect 0.5.1 finds them with `ContentDetector()` behind
    `VideoManager.set_downscale_factor()` (what run_pipeline.py's scene_detect runs).

    Each frame is subsampled by taking every n-th pixel of every n-th row (n from
    the frame width, `scene_downscale_factor`), converted to OpenCV's 8-bit HSV,
    and compared with the previous frame (`content_value`). Frame i starts a new
    shot when its value reaches `threshold` and at least `min_scene_len` frames
    have passed since the last cut; in 0.5.1 the first cut may come at any frame
    (later 0.5.x count from frame 0). Feed frames with `add`, then read `shots()`.
    """

    def __init__(self, threshold=DEFAULT_OPTIONS.scene_threshold, min_scene_len=DEFAULT_OPTIONS.scene_min_len):
        self.threshold = threshold
        self.min_scene_len = min_scene_len
        self.cuts = []  # first frames of the second and later shots
        self.frames = 0
        self._step = None
        self._prev_hsv = None

    def add(self, frame):
        """Take the next BGR frame; returns its content value (None for the first frame)."""
        import cv2
        if self._step is None:
            self._step = scene_downscale_factor(frame.shape[1])
        small = np.ascontiguousarray(frame[::self._step, ::self._step])
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        value = None
        if self._prev_hsv is not None:
            value = content_value(self._prev_hsv, hsv)
            if value >= self.threshold and (not self.cuts or self.frames - self.cuts[-1] >= self.min_scene_len):
                self.cuts.append(self.frames)
        self._prev_hsv = hsv
        self.frames += 1
        return value

    def shots(self):
        """(start, end) frame ranges, end exclusive, covering every frame; one shot when there is no cut."""
        if self.frames == 0:
            return []
        bounds = [0, *self.cuts, self.frames]
        return list(zip(bounds[:-1], bounds[1:]))


# ---- faces ----------------------------------------------------------------------------------

def detection_input(frame, scale=DEFAULT_OPTIONS.facedet_scale):
    """What to give Wav2Lip's detector for one BGR frame: scaled as syncnet_python's S3FD
    wrapper scales it (cv2.resize, fx = fy = scale, bilinear), channels reversed.

    The wrapper hands its network RGB with R-123, G-117, B-104 (as S3FD.pytorch's
    own test code does). Wav2Lip's detector reverses the channels it gets
    and subtracts (104, 117, 123) in that order; given RGB, its network sees
    B-104, G-117, R-123: each colour minus the same mean, in the BGR order the
    Caffe S3FD weights were trained in. (Given BGR, as Wav2Lip does, it sees R-104, B-123.)
    """
    import cv2
    small = cv2.resize(frame, (0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    return small[..., ::-1]


def confident_faces(faces, box_scale, options=DEFAULT_OPTIONS):
    """A detector's (K, 5) faces on a scaled frame -> (K', 5) float64 in full-frame coordinates:
    score above `face_confidence`, then NMS at `face_nms_iou`, best first (the wrapper's order)."""
    faces = np.asarray(faces, dtype=np.float64).reshape(-1, 5)
    faces = faces[faces[:, 4] > options.face_confidence]
    from face_detection.detect import nms
    scaled = np.concatenate([faces[:, :4] * box_scale, faces[:, 4:]], axis=1)
    return scaled[nms(scaled, options.face_nms_iou, pixel=0)]  # syncnet_python's nms_: sides without +1


def detect_shots_and_faces(frames, detector, options=DEFAULT_OPTIONS, batch_size=32, progress=False):
    """One pass over BGR frames: (shots, faces).

    shots: (start, end) frame ranges from `ShotCuts`; faces: per frame a (K, 5)
    float64 array [x1, y1, x2, y2, score] in full-frame coordinates (`confident_faces`).
    `detector` has `detect_from_batch(images)` like FaceAlignment; it gets
    `batch_size` scaled frames at a time, and only those are held.
    """
    from tqdm import tqdm
    cuts = ShotCuts(options.scene_threshold, options.scene_min_len)
    faces, pending, box_scale = [], [], None

    def flush():
        detected = detector.detect_from_batch(np.stack(pending))
        faces.extend(confident_faces(f, box_scale, options) for f in detected)
        pending.clear()

    for frame in tqdm(frames, desc="faces and shots", unit="frame", disable=not progress):
        cuts.add(frame)
        small = detection_input(frame, options.facedet_scale)
        if box_scale is None:
            # The wrapper multiplies boxes normalised by the scaled size by the full size.
            box_scale = np.array([frame.shape[1] / small.shape[1], frame.shape[0] / small.shape[0]] * 2)
        pending.append(small)
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return cuts.shots(), faces


# ---- tracks ---------------------------------------------------------------------------------

def greedy_tracks(shot_faces, first_frame=0, options=DEFAULT_OPTIONS):
    """track_shot's loop: per track, (frames, boxes) of its detections, tracks in the order made.

    shot_faces: per frame of the shot, its faces (rows x1, y1, x2, y2[, score]), best first.
    A track starts at the first face left; walking the frames in order, each face
    left is compared with the track's last box while fewer than `num_failed_det`
    + 1 frames separate them, and joins (leaving the pool) above `track_iou`; the
    first larger gap ends the track. Repeats until no face is left.

    The reference removes a joining face from the frame's list while a for-loop
    walks that list, so the face after it is passed over in that walk. Kept here:
    the outcome differs only where two faces of a frame overlap by IoU > 0.5,
    which the detector's NMS at 0.1 excludes, but then a track holds one frame twice.
    """
    from face_detection.tracking import iou  # run_pipeline's bb_intersection_over_union
    pool = [[tuple(float(v) for v in face[:4]) for face in frame_faces] for frame_faces in shot_faces]
    tracks = []
    start = 0  # faces only leave the pool, so the first frame with faces left only moves forward
    while True:
        while start < len(pool) and not pool[start]:
            start += 1
        if start == len(pool):
            return tracks
        frames, boxes = [], []
        for offset in range(start, len(pool)):
            frame = first_frame + offset
            if frames and frame - frames[-1] > options.num_failed_det:
                break  # the reference goes on, but leaves every later frame at its first face
            faces = pool[offset]
            i = 0
            while i < len(faces):
                if not frames or iou(faces[i], boxes[-1]) > options.track_iou:
                    frames.append(frame)
                    boxes.append(faces.pop(i))  # its successor slides into slot i ...
                i += 1  # ... and is passed over, as by the reference's list iterator
        tracks.append((frames, boxes))


def make_track(frames, boxes, options=DEFAULT_OPTIONS):
    """A Track from a track's detections, or None when the reference drops it: `min_track` or
    fewer detections, or mean box width and height both at most `min_face_size`.
    Boxes are interpolated linearly (scipy interp1d) over the frames without a detection."""
    from scipy.interpolate import interp1d
    if len(frames) <= options.min_track:
        return None
    frames = np.asarray(frames)
    boxes = np.asarray(boxes, dtype=np.float64)  # (n, 4)
    all_frames = np.arange(frames[0], frames[-1] + 1)
    filled = np.stack([interp1d(frames, boxes[:, j])(all_frames) for j in range(4)], axis=1)  # (N, 4)
    width, height = filled[:, 2] - filled[:, 0], filled[:, 3] - filled[:, 1]
    if max(np.mean(width), np.mean(height)) <= options.min_face_size:
        return None
    return Track(frames=all_frames, boxes=filled)


def tracks_from_detections(shots, faces, options=DEFAULT_OPTIONS):
    """The tracks of every shot of at least `min_track` frames, in shot order then in the order made."""
    tracks = []
    for start, end in shots:
        if end - start < options.min_track:
            continue
        for frames, boxes in greedy_tracks(faces[start:end], start, options):
            track = make_track(frames, boxes, options)
            if track is not None:
                tracks.append(track)
    return tracks


def face_tracks(video_path, detector, options=DEFAULT_OPTIONS, batch_size=32, progress=False):
    """The face tracks of a video file (list of Track, empty when there is none). UserError if
    ffmpeg cannot read it."""
    from videoio import jpeg_frames
    frames = jpeg_frames(video_path, fps=options.frame_rate, qscale=options.jpeg_qscale)
    shots, faces = detect_shots_and_faces(frames, detector, options, batch_size, progress)
    return tracks_from_detections(shots, faces, options)


# ---- crops and audio ------------------------------------------------------------------------

def crop_windows(track, options=DEFAULT_OPTIONS):
    """Per frame of the track: half the box's longer side, centre x, centre y; each median-filtered
    over the track (scipy.signal.medfilt, which pads with zeros: the first and last
    kernel // 2 values come from windows holding zeros)."""
    from scipy.signal import medfilt
    x1, y1, x2, y2 = np.asarray(track.boxes, dtype=np.float64).T
    size = np.maximum(y2 - y1, x2 - x1) / 2
    k = options.smooth_kernel
    return medfilt(size, k), medfilt((x1 + x2) / 2, k), medfilt((y1 + y2) / 2, k)


def crop_face(frame, size, cx, cy, options=DEFAULT_OPTIONS):
    """run_pipeline's crop of one frame around a smoothed box, resized to crop_size (cv2 bilinear).

    The frame is padded by p = int(size * (1 + 2 crop_scale)) with pad_value on all
    sides; rows int(cy + p - size) : int(cy + p + size (1 + 2 crop_scale)), columns
    int(cx + p - size (1 + crop_scale)) : int(cx + p + size (1 + crop_scale)) of the padded frame.
    """
    import cv2
    cs = options.crop_scale
    pad = int(size * (1 + 2 * cs))
    padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), mode="constant", constant_values=options.pad_value)
    my, mx = cy + pad, cx + pad
    face = padded[int(my - size):int(my + size * (1 + 2 * cs)), int(mx - size * (1 + cs)):int(mx + size * (1 + cs))]
    return cv2.resize(face, (options.crop_size, options.crop_size))


def crops_from_frames(frames, track, options=DEFAULT_OPTIONS):
    """The track's crops from an iterable of all the video's frames (from frame 0), one at a time."""
    sizes, cxs, cys = crop_windows(track, options)
    first, last = int(track.frames[0]), int(track.frames[-1])
    index = -1
    for index, frame in enumerate(frames):
        if index < first:
            continue
        i = index - first
        yield crop_face(frame, sizes[i], cxs[i], cys[i], options)
        if index == last:
            return
    raise ValueError(f"the video has {index + 1} frames; the track ends at frame {last}")


def track_crops(video_path, track, options=DEFAULT_OPTIONS):
    """The track's 224x224 BGR uint8 crops, decoding the video again (frames as `face_tracks` saw them).

    One decoding per track, stopped at the track's last frame: memory stays at one
    frame whatever the number or length of tracks, and each track's crops come in
    order for a scorer that streams them. Decoding all tracks in one pass would
    hold every overlapping track's crops, or interleave them.
    """
    from videoio import jpeg_frames
    frames = jpeg_frames(video_path, fps=options.frame_rate, qscale=options.jpeg_qscale)
    try:
        yield from crops_from_frames(frames, track, options)
    finally:
        frames.close()  # stops ffmpeg


def track_audio(samples, track, sample_rate=SAMPLE_RATE, frame_rate=DEFAULT_OPTIONS.frame_rate):
    """The track's span of the audio: samples [first_frame * 640, (last_frame + 1) * 640) at 16 kHz, 25 fps."""
    per_frame = sample_rate // frame_rate
    if per_frame * frame_rate != sample_rate:
        raise ValueError(f"{sample_rate} Hz audio does not divide into {frame_rate} fps frames")
    return np.asarray(samples)[int(track.frames[0]) * per_frame:(int(track.frames[-1]) + 1) * per_frame]
