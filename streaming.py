"""Streamed Wav2Lip dubbing: decode, detect, generate, paste and encode in bounded batches.

    source = FaceSource("video.mp4")
    boxes = FaceBoxes(detector=load_face_detector(device), cache=BoxCache(BoxCache.default_folder()))
    for frame in dub(source, mel, GeneratorRunner(model, device), boxes):
        writer.write(frame)

Memory holds a few batches of frames whatever the video's length: frames are
decoded in a background thread, and a video shorter than the audio is decoded
again for each loop (only its boxes, 4 ints a frame, are kept). Frames are
written by a background thread too, so decoding, the network and the encoder
overlap.
"""
import hashlib
import json
import os
import queue
import sys
import threading
import time
from collections import Counter
from itertools import islice

import numpy as np

from cli import UserError
from fileio import atomic_output
from lipsync import BoxSmoother, face_input, mel_chunk_starts, pad_box, pass_sizes, paste_face
from hparams import SYNCNET_MEL_STEP_SIZE
from videoio import VideoReader, is_image_path, read_image


class StageTimes(Counter):
    """Seconds spent per stage (decode, detect, prepare, generate, paste, encode), from any thread."""

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()

    def add(self, stage, seconds):
        with self._lock:
            self[stage] += seconds

    def timed(self, stage, iterator):
        iterator = iter(iterator)
        while True:
            start = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                return
            self.add(stage, time.perf_counter() - start)
            yield item


def prefetch(iterable, size):
    """Iterate `iterable` in a background thread, at most `size` items ahead; errors re-raised here."""
    items = queue.Queue(maxsize=size)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for item in iterable:
                while not stop.is_set():
                    try:
                        items.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put((done, None))
        except BaseException as e:  # handed to the consumer, which re-raises it
            items.put((done, e))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            item, error = items.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()


class BackgroundWriter:
    """Hands frames to `writer.write` on a thread (pipe writes release the GIL); errors re-raised."""

    def __init__(self, writer, size=16, times=None):
        self.writer = writer
        self.times = times if times is not None else StageTimes()
        self._frames = queue.Queue(maxsize=size)
        self._error = None
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def _work(self):
        while True:
            frame = self._frames.get()
            if frame is None:
                return
            if self._error is None:
                try:
                    start = time.perf_counter()
                    self.writer.write(frame)
                    self.times.add("encode", time.perf_counter() - start)
                except BaseException as e:  # re-raised in the producer's thread
                    self._error = e

    def write(self, frame):
        if self._error is not None:
            raise self._error
        self._frames.put(frame)

    def join(self):
        """Wait for every queued frame to be written; re-raise a writer error."""
        self._frames.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


class FaceSource:
    """The frames faces are taken from, after --resize_factor, --rotate and --crop.

    max_short_side: first downscale frames whose shorter side exceeds it (the
    evaluation scripts' --max_frame_res; off for inference.py).

    An image (or --static) gives one frame. As in the reference, resize, rotate
    and crop apply to videos only.
    """

    def __init__(self, path, static=False, fps=25.0, resize_factor=1, rotate=False, crop=(0, -1, 0, -1),
                 max_short_side=None):
        self.path = os.fspath(path)
        self.resize_factor, self.rotate, self.crop = int(resize_factor), bool(rotate), tuple(crop)
        self.max_short_side = max_short_side
        self.is_image = is_image_path(self.path)
        self.static = bool(static) or self.is_image
        if self.is_image:
            self._image = read_image(self.path)
            self.fps, self.frame_count = float(fps), 1
        else:
            with VideoReader(self.path) as video:
                self.fps, self.frame_count = video.fps, video.frame_count
            if not self.fps > 0:
                raise UserError(f"{self.path}: the video reports no frame rate")
        if self.static:
            self.frame_count = 1

    def _prepare(self, frame):
        import cv2
        if self.max_short_side and min(frame.shape[:2]) > self.max_short_side:
            # real_videos_inference.py's --max_frame_res: shorter side down to this, sizes truncated.
            scale = min(frame.shape[:2]) / float(self.max_short_side)
            frame = cv2.resize(frame, (int(frame.shape[1] / scale), int(frame.shape[0] / scale)))
        if self.resize_factor > 1:
            frame = cv2.resize(frame, (frame.shape[1] // self.resize_factor,
                                       frame.shape[0] // self.resize_factor))
        if self.rotate:
            frame = cv2.rotate(frame, cv2.ROTATE_90_CLOCKWISE)
        y1, y2, x1, x2 = self.crop
        x2 = frame.shape[1] if x2 == -1 else x2
        y2 = frame.shape[0] if y2 == -1 else y2
        frame = frame[y1:y2, x1:x2]
        if frame.size == 0:
            raise UserError(f"{self.path}: --crop {' '.join(map(str, self.crop))} leaves an empty frame")
        return frame

    def frames(self):
        """A fresh iterator over the (prepared) frames, decoded one at a time."""
        if self.is_image:
            yield self._image
            return
        with VideoReader(self.path) as video:
            count = 0
            for frame in video:
                yield self._prepare(frame)
                count += 1
                if self.static:
                    return
        if count == 0:
            raise UserError(f"{self.path}: the video has no frames")


def load_face_detector(device, precision="fp32", max_side=None):
    """The S3FD detector of face_detection/ on `device`, in `precision`, on frames downscaled to
    `max_side` (None: full size)."""
    import face_detection
    return face_detection.FaceAlignment(face_detection.LandmarksType._2D, flip_input=False,
                                        device=str(device), precision=precision, max_side=max_side)


class BoxCache:
    """Detector rects of a video, stored so that dubbing it again skips face detection.

    One .npz per (video path, size, mtime, frame preparation, detector weights,
    `settings`) under `folder`, default $XDG_CACHE_HOME/wav2lip/boxes
    (~/.cache/wav2lip/boxes). `settings` holds whatever else decides the boxes
    (inference.py: detection batch, device type, precision, --detect_max_side,
    --detect_every, --face_select, --face_point). Any change to the video file or
    the settings gives a different key, so no stale entry is read.
    """

    def __init__(self, folder, settings=None):
        self.folder = os.fspath(folder)
        self.settings = dict(settings or {})

    @staticmethod
    def default_folder():
        root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return os.path.join(root, "wav2lip", "boxes")

    def key(self, source):
        from face_detection import default_weights_path
        stat = os.stat(source.path)
        weights = default_weights_path()
        weights_stat = os.stat(weights) if weights and os.path.isfile(weights) else None
        return json.dumps({
            "video": os.path.abspath(source.path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "resize_factor": source.resize_factor, "rotate": source.rotate, "crop": list(source.crop),
            "static": source.static, "weights": [weights, weights_stat.st_size, weights_stat.st_mtime_ns]
            if weights_stat else None, **self.settings,
        }, sort_keys=True)

    def _path(self, key):
        return os.path.join(self.folder, hashlib.sha256(key.encode()).hexdigest()[:32] + ".npz")

    def load(self, key, frames_needed):
        """Cached rects (list of tuple or None) covering `frames_needed` frames, else None."""
        path = self._path(key)
        if not os.path.isfile(path):
            return None
        try:
            with np.load(path) as data:
                if str(data["key"]) != key:
                    return None
                rects, complete = data["rects"], bool(data["complete"])
        except (OSError, ValueError, KeyError):  # unreadable entry: detect again
            return None
        if len(rects) < frames_needed and not complete:
            return None
        return [None if r[0] < 0 else tuple(int(v) for v in r) for r in rects]

    def save(self, key, rects, complete):
        """Store rects (written to a temporary file, then renamed); a cache that cannot be written
        is only a warning."""
        array = np.array([(-1, -1, -1, -1) if r is None else r for r in rects], dtype=np.int64).reshape(-1, 4)
        try:
            with atomic_output(self._path(key), suffix=".npz") as tmp:
                np.savez(tmp, key=np.array(key), rects=array, complete=np.array(complete))
        except OSError as e:
            print(f"warning: face boxes not cached in {self.folder}: {e}", file=sys.stderr)


class FaceBoxes:
    """Where each frame's face is: a fixed --box, or S3FD rects (cached) padded and smoothed.

    box: (y1, y2, x1, x2) or None to detect; pads: (top, bottom, left, right);
    no_face: "error" (the reference) or "pass" (frames without a face are
    written unchanged, and box smoothing restarts after them). face_rule and
    face_point choose the face (face_detection.FaceChooser); detect_every: detect
    every Nth frame and interpolate between (face_detection.FaceTrack).
    """

    def __init__(self, box=None, detector=None, batch_size=16, pads=(0, 10, 0, 0), smooth=True,
                 no_face="error", cache=None, face_rule="score", face_point=None, detect_every=1):
        self.box, self.batch_size = box, int(batch_size)
        self.detector = detector
        self.pads, self.smooth, self.no_face, self.cache = tuple(pads), smooth, no_face, cache
        self.face_rule, self.face_point, self.detect_every = face_rule, face_point, int(detect_every)

    def _detected(self, frames):
        """(frame, rect or None) per frame, from S3FD."""
        from face_detection import BatchedDetection, FaceChooser, FaceTrack
        detection = BatchedDetection(self.detector, self.batch_size)  # halves its batch when out of memory
        chooser = FaceChooser(self.face_rule, self.face_point)
        return FaceTrack(detection, chooser, self.detect_every).stream(frames)

    def _no_face(self, source, index):
        if self.face_point is None:
            return UserError(f"{source.path}: no face detected in frame {index} "
                             "(use --box, or --no_face pass to leave such frames unchanged)")
        x, y = self.face_point
        return UserError(f"{source.path}: the face at --face_point {x} {y} is not found in frame {index} "
                         "(use --no_face pass to leave such frames unchanged)")

    def track(self, source, frames, frames_needed, times):
        """Yield (frame, coords (y1, y2, x1, x2) or None) for each frame of `frames`, in order."""
        if self.box is not None:
            for index, frame in enumerate(frames):
                yield frame, self._checked(self.box, frame, index, source)
            return
        key = self.cache.key(source) if self.cache else None
        cached = self.cache.load(key, frames_needed) if self.cache else None
        smoother = BoxSmoother(enabled=self.smooth)
        seen = []
        rects = zip(frames, cached) if cached else times.timed("detect", self._detected(frames))
        for index, (frame, rect) in enumerate(rects):
            if index == 0 and self.face_point is not None:
                x, y = self.face_point
                if not (0 <= x < frame.shape[1] and 0 <= y < frame.shape[0]):
                    raise UserError(f"--face_point {x} {y} is outside the {frame.shape[1]}x{frame.shape[0]} frame")
            seen.append(rect)
            if rect is not None:
                yield from self._final(smoother.push((index, frame), pad_box(rect, self.pads, frame.shape)), source)
                continue
            if self.no_face == "error":
                raise self._no_face(source, index)
            yield from self._final(smoother.finish(), source)
            yield frame, None
        yield from self._final(smoother.finish(), source)
        if self.cache and not cached:
            self.cache.save(key, seen, complete=len(seen) < frames_needed)

    def _final(self, ready, source):
        for (index, frame), (x1, y1, x2, y2) in ready:
            yield frame, self._checked((y1, y2, x1, x2), frame, index, source)

    @staticmethod
    def _checked(coords, frame, index, source):
        y1, y2, x1, x2 = coords
        if not (0 <= y1 < y2 <= frame.shape[0] and 0 <= x1 < x2 <= frame.shape[1]):
            raise UserError(f"{source.path}: face box (y1 y2 x1 x2) = {y1} {y2} {x1} {x2} is empty or "
                            f"outside frame {index} of {frame.shape[1]}x{frame.shape[0]}")
        return coords


def dub(source, mel, runner, boxes, batch_size=128, times=None, progress=False, final_window=True,
        paste=paste_face, with_coords=False):
    """Output frames (BGR uint8), one per 16-frame mel window at the source's fps, in order.

    final_window: end with a window on the last 16 mel frames, as inference.py does
    (the evaluation scripts do not; see lipsync.mel_chunk_starts). paste(frame, face,
    coords): how a generated face goes into its frame (the reference's hard paste, or
    blending.blend_face). with_coords: yield (frame, face box (y1, y2, x1, x2) or None)
    pairs, for a later pass over the face (enhancer.enhance_frames).
    """
    from tqdm import tqdm
    times = times if times is not None else StageTimes()
    starts = mel_chunk_starts(mel.shape[1], source.fps, final_window)
    n_out = len(starts)
    # Keys let the runner encode each distinct face once when frames repeat: a frame is seen
    # again when the video loops back to it (a still image is frame 0 of a 1-frame video).
    def comes_again(index):
        return index + source.frame_count < n_out

    def tracked():
        """(frame index, frame, coords) for every output frame, looping the video as needed."""
        first_pass = times.timed("decode", islice(source.frames(), n_out))
        coords_of = []
        for frame, coords in boxes.track(source, prefetch(first_pass, 8), n_out, times):
            coords_of.append(coords)
            yield len(coords_of) - 1, frame, coords
        done = len(coords_of)
        if done == 1:  # a still image: keep its one frame instead of decoding it per output frame
            yield from ((0, frame, coords_of[0]) for _ in range(n_out - 1))
            return
        while done < n_out:
            again = times.timed("decode", islice(source.frames(), min(len(coords_of), n_out - done)))
            for index, frame in enumerate(prefetch(again, 8)):
                yield index, frame, coords_of[index]
            done += min(len(coords_of), n_out - done)

    # The reference's batches of batch_size, each cut into the runner's passes: frames in
    # flight stay few (whatever batch_size), faces are batched as exactly as the reference.
    pieces = [size for first in range(0, n_out, batch_size)
              for size in pass_sizes(min(batch_size, n_out - first), runner.micro_batch)]
    bar = tqdm(total=n_out, desc="lip-sync", unit="frame", disable=not progress)
    items = enumerate(tracked())
    for size in pieces:
        batch = list(islice(items, size))
        start = time.perf_counter()
        with_face = [(i, index, frame, coords) for i, (index, frame, coords) in batch if coords is not None]
        faces, keys = [], []
        for _, index, frame, (y1, y2, x1, x2) in with_face:
            key = index if comes_again(index) or runner.has_features(index) else None
            # A face the runner has encoded, or will encode earlier in this pass, needs no input,
            # unless it is alone in its pass (then it is encoded alone, as in the reference).
            needed = key is None or len(with_face) == 1 or not (runner.has_features(key) or key in keys)
            faces.append(face_input(frame[y1:y2, x1:x2], runner.img_size) if needed else None)
            keys.append(key)
        mels = np.stack([mel[:, starts[i]:starts[i] + SYNCNET_MEL_STEP_SIZE] for i, *_ in with_face]) \
            if with_face else None
        times.add("prepare", time.perf_counter() - start)
        start = time.perf_counter()
        generated = runner(mels, faces, keys) if with_face else []
        times.add("generate", time.perf_counter() - start)
        start = time.perf_counter()
        out = {i: paste(frame.copy(), face, coords)
               for (i, _, frame, coords), face in zip(with_face, generated)}
        times.add("paste", time.perf_counter() - start)
        for i, (_, frame, coords) in batch:
            yield (out.get(i, frame), coords) if with_coords else out.get(i, frame)
        bar.update(len(batch))
    bar.close()
