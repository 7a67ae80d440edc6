"""FaceAlignment: the face detector Wav2Lip's scripts call, and batched detection over many frames.

    detector = FaceAlignment(LandmarksType._2D, flip_input=False, device="auto")
    boxes = detector.get_detections_for_batch(frames)  # [(x1, y1, x2, y2) or None, ...]
    boxes = detect_faces(detector, frames, batch_size=16)  # any number of frames, OOM-safe

Memory: each S3FD pass takes at most `memory_budget` bytes of activations
(512 MB on CPU and MPS, half the free memory on CUDA): a batch is cut into
passes of as many frames as fit, and a frame too large for one pass goes
through the first blocks in strips (same boxes), so 1080p detection does not
need gigabytes. Out of memory all the same, the batch is halved, then the budget.
"""
import enum
import os
import sys

import numpy as np
import torch

from cli import UserError
from fileio import download, fetch_if_missing

from .detect import MIN_SIDE, decode_heads, face_rect, frames_to_input, select_faces
from .s3fd import S3FD, strip_halo

S3FD_URL = "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth"
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# S3FD's peak activation memory in float32 on CPU, measured at 1080p with inference.py's malloc
# settings (README, "Detector memory"), rounded up:
WHOLE_FRAME_BYTES = 520  # per pixel of a frame detected in one piece
# In strips through 3 or 4 blocks: per pixel of the frame, and per pixel of a strip (halo included).
STRIP_BYTES = {3: (90, 400), 4: (60, 460)}
CPU_MEMORY_BUDGET = 512 << 20  # activation bytes one S3FD pass may take on CPU and MPS
MIN_MEMORY_BUDGET = 16 << 20  # out-of-memory retries stop halving the budget here


def detection_plan(height, width, budget):
    """(frames per S3FD pass, strips) whose activations fit in `budget` bytes; strips: {} (whole
    frames) or S3FD.forward's strip_rows and strip_blocks, at the depth that repeats the fewest
    halo rows. When nothing fits (4K frames in 512 MB): 4 blocks deep, strips of one halo's
    height (3x the computation of those blocks; thinner strips would save little memory).

    The float32 figures serve every precision (16-bit activations take a little over half).
    """
    whole = WHOLE_FRAME_BYTES * height * width
    if whole <= budget:
        return max(1, budget // whole), {}
    plans = []
    for blocks, (per_pixel, per_strip_pixel) in STRIP_BYTES.items():
        stride, halo = 2 ** blocks, strip_halo(blocks)
        rows = int((budget - per_pixel * height * width) / (per_strip_pixel * width)) - 2 * halo
        rows = rows // stride * stride
        if rows >= stride:
            plans.append(((rows + 2 * halo) / rows, dict(strip_rows=rows, strip_blocks=blocks)))
    if not plans:
        deepest = max(STRIP_BYTES)
        return 1, dict(strip_rows=strip_halo(deepest), strip_blocks=deepest)
    return 1, min(plans, key=lambda plan: plan[0])[1]


def default_memory_budget(device):
    """CPU_MEMORY_BUDGET, or on CUDA half the device's free memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    return CPU_MEMORY_BUDGET


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
    precision: "fp32" (the reference's boxes), "bf16" or "fp16" (CUDA only):
    the network's dtype; the heads are decoded in float32.
    memory_budget: activation bytes one pass may take (default_memory_budget).
    `landmarks_type` and `flip_input` are accepted for compatibility and unused.
    """

    def __init__(self, landmarks_type=LandmarksType._2D, flip_input=False, device="auto",
                 path_to_detector=None, max_side=None, precision="fp32", memory_budget=None):
        from devices import get_device
        if max_side is not None and max_side < MIN_SIDE:
            raise UserError(f"max_side must be at least {MIN_SIDE} pixels, got {max_side}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
        self.device = get_device(str(device))
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError("fp16 needs a CUDA device; use bf16 on CPU")
        self.max_side = max_side
        self.dtype = PRECISIONS[precision]
        self.net = load_s3fd(path_to_detector, self.device).to(self.dtype)
        self.memory_budget = int(memory_budget or default_memory_budget(self.device))

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
        per_pass, strips = detection_plan(*small.shape[1:3], self.memory_budget)
        faces = []
        for start in range(0, len(small), per_pass):
            outputs = self.net(frames_to_input(small[start:start + per_pass], self.device, self.dtype), **strips)
            faces += select_faces(*decode_heads([o.float() for o in outputs]))
        if box_scale is not None:
            faces = [np.concatenate([f[:, :4] * box_scale, f[:, 4:]], axis=1) for f in faces]
        return faces

    def get_detections_for_batch(self, images):
        """Per frame, the best face as ints (x1, y1, x2, y2) with negatives clipped to 0, or None."""
        return [face_rect(faces[0]) if len(faces) else None for faces in self.detect_from_batch(images)]

    def use_less_memory(self):
        """Halve the activation memory of a pass (after an out-of-memory); False when at the minimum."""
        if self.memory_budget <= MIN_MEMORY_BUDGET:
            return False
        self.memory_budget = max(MIN_MEMORY_BUDGET, self.memory_budget // 2)
        return True


def is_out_of_memory(error):
    """CUDA's, MPS's and the CPU allocator's out-of-memory errors, and Python's MemoryError."""
    message = str(error)
    return (isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in message
            or "can't allocate memory" in message)


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
        """The best face's box (x1, y1, x2, y2) or None for each of a list of same-size frames."""
        return self._batched(self.detector.get_detections_for_batch, frames)

    def detect_all(self, frames):
        """Every kept face of each frame: (K, 5) arrays [x1, y1, x2, y2, score], best first."""
        return self._batched(self.detector.detect_from_batch, frames)

    def _batched(self, detect, frames):
        results = []
        start = 0
        while start < len(frames):
            chunk = frames[start:start + self.batch_size]
            try:
                results += detect(np.stack(chunk))
            except (RuntimeError, MemoryError) as e:
                if not is_out_of_memory(e):
                    raise
                self._shrink()
                continue
            start += len(chunk)
        return results

    def _shrink(self):
        """Halve the batch; at one frame, halve the detector's memory per pass (thinner strips)."""
        device = self.detector.device
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if self.batch_size > 1:
            self.batch_size //= 2
            print(f"out of memory on {device}: face detection batch size now {self.batch_size}", file=sys.stderr)
        elif self.detector.use_less_memory():
            print(f"out of memory on {device}: face detection now takes at most "
                  f"{self.detector.memory_budget >> 20} MB per pass", file=sys.stderr)
        else:
            raise UserError(f"out of memory detecting faces on {device} even one frame at a time; "
                            "detect on smaller frames (max_side / --resize_factor)")

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
