"""FaceAlignment: the face detector Wav2Lip's scripts call, and batched detection over many frames.

    detector = FaceAlignment(LandmarksType._2D, flip_input=False, device="auto")
    boxes = detector.get_detections_for_batch(frames)  # [(x1, y1, x2, y2) or None, ...]
    boxes = detect_faces(detector, frames, batch_size=16)  # any number of frames, OOM-safe
"""
import enum
import os
import sys

import numpy as np
import torch

from cli import UserError
from fileio import download, fetch_if_missing

from .detect import MIN_SIDE, decode_heads, frames_to_input, select_faces
from .s3fd import S3FD

S3FD_URL = "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth"


def default_weights_path():
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "detection", "sfd", "s3fd.pth")


class LandmarksType(enum.Enum):
    """Kept for the reference's call signature; only face boxes are computed here."""
    _2D = 1
    _2halfD = 2
    _3D = 3


def ensure_weights(path=None):
    """Path of the S3FD weights, downloading the published file when it is missing."""
    path = os.fspath(path) if path is not None else default_weights_path()
    return fetch_if_missing(path, S3FD_URL, "S3FD weights", download)  # api.download: tests replace it


def load_s3fd(path=None, device="cpu"):
    """The S3FD network with the weights of `path` (default: face_detection/detection/sfd/s3fd.pth)."""
    from checkpoints import load_model
    model = S3FD()
    load_model(model, ensure_weights(path), device)
    return model.to(device).eval()


class FaceAlignment:
    """Wav2Lip's face detector: S3FD boxes for batches of BGR frames.

    max_side: when set, frames larger than this are downscaled (longest side =
    max_side) for detection and the boxes mapped back. Much faster on large
    frames, but small faces may be missed and boxes are coarser; off by default.
    `landmarks_type` and `flip_input` are accepted for compatibility and unused.
    """

    def __init__(self, landmarks_type=LandmarksType._2D, flip_input=False, device="auto",
                 path_to_detector=None, max_side=None):
        from devices import get_device
        if max_side is not None and max_side < MIN_SIDE:
            raise UserError(f"max_side must be at least {MIN_SIDE} pixels, got {max_side}")
        self.device = get_device(str(device))
        self.max_side = max_side
        self.net = load_s3fd(path_to_detector, self.device)

    def _resized(self, images):
        """images, or a downscaled copy when they exceed max_side; with the factor mapping boxes back."""
        height, width = images.shape[1:3]
        if self.max_side is None or max(height, width) <= self.max_side:
            return images, None
        import cv2
        scale = self.max_side / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))  # cv2 wants (w, h)
        small = np.stack([cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in images])
        return small, np.array([width / size[0], height / size[1]] * 2, dtype=np.float64)

    @torch.inference_mode()
    def detect_from_batch(self, images):
        """Per frame, every kept face as a (K, 5) array [x1, y1, x2, y2, score], best first.

        images: (N, H, W, 3) BGR uint8, all frames the same size.
        """
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected (N, H, W, 3) uint8 BGR frames, got {images.shape} {images.dtype}")
        small, box_scale = self._resized(images)
        if min(small.shape[1:3]) < MIN_SIDE:
            raise ValueError(f"frames of {small.shape[2]}x{small.shape[1]} pixels are too small for S3FD "
                             f"(at least {MIN_SIDE}x{MIN_SIDE})")
        outputs = self.net(frames_to_input(small, self.device))
        faces = select_faces(*decode_heads(outputs))
        if box_scale is not None:
            faces = [np.concatenate([f[:, :4] * box_scale, f[:, 4:]], axis=1) for f in faces]
        return faces

    def get_detections_for_batch(self, images):
        """Per frame, the best face as ints (x1, y1, x2, y2) with negatives clipped to 0, or None."""
        results = []
        for faces in self.detect_from_batch(images):
            if len(faces) == 0:
                results.append(None)
                continue
            x1, y1, x2, y2 = (int(v) for v in np.clip(faces[0, :4], 0, None))
            results.append((x1, y1, x2, y2))
        return results


def is_out_of_memory(error):
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error)


class BatchedDetection:
    """Runs a detector over frames in batches, halving the batch whenever the device runs out of memory.

    The batch size found stays in force for later calls, as in the reference's inference.
    """

    def __init__(self, detector, batch_size):
        if batch_size < 1:
            raise UserError(f"face detection batch size must be at least 1, got {batch_size}")
        self.detector = detector
        self.batch_size = int(batch_size)

    def detect(self, frames):
        """Boxes (or None) for a list of same-size frames."""
        boxes = []
        start = 0
        while start < len(frames):
            chunk = frames[start:start + self.batch_size]
            try:
                boxes += self.detector.get_detections_for_batch(np.stack(chunk))
            except RuntimeError as e:
                if not is_out_of_memory(e):
                    raise
                self._shrink()
                continue
            start += len(chunk)
        return boxes

    def _shrink(self):
        device = self.detector.device
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if self.batch_size == 1:
            raise UserError(f"out of memory detecting faces on {device} even one frame at a time; "
                            "detect on smaller frames (max_side / --resize_factor)")
        self.batch_size //= 2
        print(f"out of memory on {device}: face detection batch size now {self.batch_size}", file=sys.stderr)

    def stream(self, frames):
        """(frame, box or None) for every frame of an iterable, holding one batch in memory at a time."""
        pending = []
        for frame in frames:
            pending.append(frame)
            if len(pending) >= self.batch_size:
                yield from zip(pending, self.detect(pending))
                pending = []
        if pending:
            yield from zip(pending, self.detect(pending))


def detect_faces(detector, frames, batch_size=16):
    """Boxes (x1, y1, x2, y2) or None for every frame of a list, batched and OOM-safe."""
    return BatchedDetection(detector, batch_size).detect(list(frames))
