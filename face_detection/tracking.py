"""Which face, frame after frame, and detection on every Nth frame with boxes interpolated between.

    chooser = FaceChooser("largest")                   # "score" (the reference), "largest", or point=(x, y)
    track = FaceTrack(BatchedDetection(detector, 16), chooser, every=5)
    for frame, rect in track.stream(frames):           # rect: (x1, y1, x2, y2) ints, or None
        ...
"""
import copy
from itertools import islice

import numpy as np

from .detect import face_rect

FACE_RULES = ("score", "largest")
FOLLOW_IOU = 0.3  # a followed face continues to the next detected box overlapping it by more (IoU)


def iou(a, b):
    """IoU of two (x1, y1, x2, y2) boxes, sides without +1 (syncnet_python's bb_intersection_over_union;
    S3FD's NMS counts +1)."""
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


class FaceChooser:
    """Picks one face per frame out of every face S3FD kept, called on frames in order.

    rule "score": the highest-scoring face (the reference's choice); "largest": the
    largest box (the higher score on a tie). point=(x, y): the face whose box contains
    the point when it first appears (the higher score if several do), then in each
    frame the face overlapping its last box by more than FOLLOW_IOU (the most, if
    several). None when no face qualifies: no face at all, the point's face not yet
    there, or lost (until a face overlaps its last box again).
    """

    def __init__(self, rule="score", point=None):
        if rule not in FACE_RULES:
            raise ValueError(f"rule must be one of {FACE_RULES}, got {rule!r}")
        self.rule, self.point = rule, point
        self.last = None  # the followed face's last box (point only)

    def __call__(self, faces):
        """faces: (K, 5) [x1, y1, x2, y2, score], best first -> (x1, y1, x2, y2) ints, or None."""
        if len(faces) == 0:
            return None
        if self.point is None:
            areas = (faces[:, 2] - faces[:, 0]) * (faces[:, 3] - faces[:, 1])
            return face_rect(faces[0 if self.rule == "score" else int(np.argmax(areas))])
        if self.last is None:
            x, y = self.point
            inside = (faces[:, 0] <= x) & (x <= faces[:, 2]) & (faces[:, 1] <= y) & (y <= faces[:, 3])
            if not inside.any():
                return None
            index = int(np.argmax(inside))
        else:
            overlaps = [iou(self.last, face) for face in faces]
            index = int(np.argmax(overlaps))
            if overlaps[index] <= FOLLOW_IOU:
                return None
        self.last = faces[index, :4]
        return face_rect(faces[index])


def interpolated(a, b, n):
    """The n boxes strictly between boxes a and b, evenly spaced, rounded to pixels."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return [tuple(int(v) for v in np.rint(a + (b - a) * k / (n + 1))) for k in range(1, n + 1)]


class FaceTrack:
    """One chosen face box per frame of a stream, detecting faces on every `every`-th frame only.

    Frames 0, every, 2 * every, ... and the last frame are detected; the frames between
    two of them get boxes interpolated between theirs, unless the two boxes overlap by
    FOLLOW_IOU or less or one is None (a cut, a face lost, the choice switching faces):
    then those frames are detected too. every=1 detects every frame, in batches of
    detection.batch_size as the reference does. About batch_size + every frames are held.
    """

    def __init__(self, detection, chooser, every=1):
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.detection, self.chooser, self.every = detection, chooser, int(every)
        self._last = None  # the last detected frame's box

    def stream(self, frames):
        """(frame, rect or None) for every frame of an iterable, in order."""
        frames = iter(frames)
        held, base = [], 0  # frames not yet yielded, from absolute index `base`
        ended = False
        while not ended:
            chunk = list(islice(frames, self.detection.batch_size))
            ended = len(chunk) < self.detection.batch_size
            held += chunk
            keys = [p for p in range(len(held)) if (base + p) % self.every == 0]
            if ended and held and (not keys or keys[-1] != len(held) - 1):
                keys.append(len(held) - 1)
            if not keys:
                continue
            previous = -1
            for p, faces in zip(keys, self.detection.detect_all([held[p] for p in keys])):
                yield from self._span(held[previous + 1:p], held[p], faces)
                previous = p
            base += keys[-1] + 1
            held = held[keys[-1] + 1:]

    def _span(self, between, frame, faces):
        """(frame, rect) for the frames between the last detected frame and `frame`, then for it."""
        before = copy.copy(self.chooser)
        rect = self.chooser(faces)
        if between:
            if self._last is not None and rect is not None and iou(self._last, rect) > FOLLOW_IOU:
                rects = interpolated(self._last, rect, len(between))
            else:  # choose again, frame by frame
                self.chooser = before
                rects = [self.chooser(f) for f in self.detection.detect_all(between)]
                rect = self.chooser(faces)
            yield from zip(between, rects)
        self._last = rect
        yield frame, rect
