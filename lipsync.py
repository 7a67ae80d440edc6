"""The pieces of Wav2Lip inference (SPEC section 9), each reproducing the published algorithm.

    starts = mel_chunk_starts(mel.shape[1], fps)        # one 16-frame mel window per output frame
    smoother = BoxSmoother()                            # the reference's 5-box smoothing, streamed
    runner = GeneratorRunner(model, device, "fp32")     # batched generator, frame-exact
    faces = runner(mel_windows, face_crops, keys)       # (B, 96, 96, 3) uint8 BGR
    paste_face(frame, faces[0], (y1, y2, x1, x2))

Nothing here reads media: streaming.py feeds these from videos, inference.py is the CLI.
"""
import warnings
from collections import deque

import numpy as np
import torch

from hparams import MEL_FRAMES_PER_SECOND, SYNCNET_MEL_STEP_SIZE, hparams

IMG_SIZE = hparams.img_size  # 96
SMOOTHING_WINDOW = 5  # boxes averaged per frame (the reference's T=5)
PRECISIONS = ("fp32", "bf16", "fp16")


def mel_chunk_starts(mel_frames, fps):
    """First mel frame of each output frame's 16-frame window, exactly as the reference chunks.

    Window i starts at int(i * 80 / fps); the last window is the final 16 mel
    frames, and chunking stops there.
    """
    if mel_frames < SYNCNET_MEL_STEP_SIZE:
        raise ValueError(f"{mel_frames} mel frames, fewer than one {SYNCNET_MEL_STEP_SIZE}-frame window")
    step = MEL_FRAMES_PER_SECOND / fps
    starts = []
    i = 0
    while True:
        start = int(i * step)
        if start + SYNCNET_MEL_STEP_SIZE > mel_frames:
            starts.append(mel_frames - SYNCNET_MEL_STEP_SIZE)
            return starts
        starts.append(start)
        i += 1


def pad_box(rect, pads, frame_shape):
    """Detector rect (x1, y1, x2, y2) grown by pads (top, bottom, left, right), clipped to the frame."""
    pad_top, pad_bottom, pad_left, pad_right = pads
    height, width = frame_shape[:2]
    y1 = max(0, rect[1] - pad_top)
    y2 = min(height, rect[3] + pad_bottom)
    x1 = max(0, rect[0] - pad_left)
    x2 = min(width, rect[2] + pad_right)
    return [x1, y1, x2, y2]


class BoxSmoother:
    """The reference's `get_smoothened_boxes(boxes, T=5)` over a stream, holding T boxes at most.

    The reference smooths an int array in place: box i becomes the truncated
    mean of boxes [i, i+T); the last boxes (i + T > n) use the window [n-T, n)
    (Python slicing, so a negative start counts from the end), which by then
    holds already-smoothed entries. Box i is final as soon as box i+T-1 has
    arrived, the tail only once the stream's length n is known (`finish`).

        smoother = BoxSmoother()
        for item, box in stream:
            ready += smoother.push(item, box)   # [(item, (x1, y1, x2, y2)), ...] in order
        ready += smoother.finish()
    """

    def __init__(self, window=SMOOTHING_WINDOW, enabled=True):
        self.window = window
        self.enabled = enabled
        self._pending = deque()  # (item, original box) not yet final
        self._recent = deque(maxlen=window)  # smoothed boxes of the last final entries
        self._count = 0

    def push(self, item, box):
        box = np.asarray(box, dtype=np.int64)
        self._count += 1
        if not self.enabled:
            return [(item, tuple(int(v) for v in box))]
        self._pending.append((item, box))
        if len(self._pending) < self.window:
            return []
        smoothed = np.mean([b for _, b in self._pending], axis=0).astype(np.int64)
        first, _ = self._pending.popleft()
        self._recent.append(smoothed)
        return [(first, tuple(int(v) for v in smoothed))]

    def finish(self):
        """The remaining boxes, smoothed with the reference's end-of-sequence window; then reset."""
        n, window = self._count, self.window
        pending = list(self._pending)
        ready = []
        if pending:
            first_index = n - len(pending)
            # boxes[first_index - len(recent):] as the reference's array holds them now.
            boxes = [*self._recent, *(b.copy() for _, b in pending)]
            base = first_index - len(self._recent)
            start = n - window if n - window >= 0 else max(0, n + (n - window))
            for offset, (item, _) in enumerate(pending):
                i = first_index + offset
                boxes[i - base] = np.mean(boxes[start - base:], axis=0).astype(np.int64)
                ready.append((item, tuple(int(v) for v in boxes[i - base])))
        self._pending.clear()
        self._recent.clear()
        self._count = 0
        return ready


def load_generator(path, device):
    """The Wav2Lip generator of checkpoint `path` on `device`, in eval mode.

    Built on the meta device and given the checkpoint's tensors (assign=True):
    no random initialisation, and one copy of the weights in memory instead of two.
    """
    from checkpoints import load_checkpoint, load_state_dict_strict
    from models import Wav2Lip
    with torch.device("meta"):
        model = Wav2Lip()
    state_dict = load_checkpoint(path, device)["state_dict"]
    with warnings.catch_warnings():  # copying into meta tensors is a no-op: only the checks matter
        warnings.simplefilter("ignore", UserWarning)
        load_state_dict_strict(model, state_dict, path)  # one-line errors naming the file and mismatch
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval()


def paste_face(frame, face, coords):
    """Resize the generated 96x96 face to the box (y1, y2, x1, x2) and write it into `frame`."""
    import cv2
    y1, y2, x1, x2 = coords
    frame[y1:y2, x1:x2] = cv2.resize(face, (x2 - x1, y2 - y1))
    return frame


def face_input(crop):
    """A face crop -> the generator's (96, 96, 6) uint8 input: (lower half zeroed, full)."""
    import cv2
    face = cv2.resize(crop, (IMG_SIZE, IMG_SIZE))
    masked = face.copy()
    masked[IMG_SIZE // 2:] = 0
    return np.concatenate((masked, face), axis=2)


def pass_sizes(n, size):
    """Sizes of the generator passes over n faces: at most `size` (at least 2) each, and none
    of a single face unless n == 1.

    oneDNN computes a batch of one with other kernels (its numbers differ in the
    last bits), so a face may be alone in a pass only where the reference's
    batch of wav2lip_batch_size holds it alone too; other batch sizes give
    bit-identical faces (tests/test_lipsync.py).
    """
    size = max(2, int(size))
    sizes = [size] * (n // size) + ([n % size] if n % size else [])
    if len(sizes) > 1 and sizes[-1] == 1:
        sizes[-2:] = [sizes[-2] + 1]  # fold a lone last face into the previous pass
    return sizes


class GeneratorRunner:
    """Runs the Wav2Lip generator on batches, frame-exact with the reference in fp32.

    Each face goes through the face encoder once per key: faces that repeat
    (a still image, a looping video) reuse the encoder outputs cached under
    their key, up to `feature_cache_bytes`. Large batches are split into
    passes of `micro_batch` faces (see `pass_sizes`), which bounds memory.

    precision: "fp32" (faithful), "bf16" (autocast, fast on CPUs with AMX or
    AVX512-BF16, and on recent GPUs) or "fp16" (CUDA only).
    """

    def __init__(self, model, device, precision="fp32", micro_batch=16,
                 feature_cache_bytes=128 << 20):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "fp16" and device.type != "cuda":
            raise ValueError("fp16 needs a CUDA device; use bf16 on CPU")
        self.device = device
        self.precision = precision
        self.micro_batch = max(1, int(micro_batch))
        self.model = model.to(device).eval()
        self._autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        if self._autocast_dtype is not None:
            # Reduced precision changes the numbers anyway: channels_last weights are faster.
            self.model = self.model.to(memory_format=torch.channels_last)
        self._features = {}  # key -> (encoder pass outputs, row)
        self._blocks = {}  # id -> encoder pass outputs kept for the cache
        self._feature_bytes = 0
        self.feature_cache_bytes = int(feature_cache_bytes)
        self.encoded_faces = 0  # faces that went through the face encoder (for tests/benchmarks)

    def _autocast(self):
        if self._autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    def _faces_tensor(self, batch):
        """(N, 96, 96, 6) uint8 -> (N, 6, 96, 96) float in [0, 1], in NHWC memory (channels_last).

        The reference's np.transpose view keeps NHWC memory and torch.FloatTensor keeps its
        strides, so the published code runs the whole network channels_last: doing the same
        gives the same kernels and bit-identical numbers. float32 / 255 equals the
        reference's float64 / 255. cast to float32 (checked for all 256 values).
        """
        x = torch.from_numpy(batch.astype(np.float32) / np.float32(255)).permute(0, 3, 1, 2)
        return x.to(self.device)

    def _mels_tensor(self, mels):
        """(N, 80, 16) -> (N, 1, 80, 16) with the reference's strides, (1280, 1, 16, 1).

        Even the stride of the size-one channel dimension picks oneDNN's kernel:
        np.newaxis (stride 0) gives other last bits than the reference's reshape.
        """
        mels = np.ascontiguousarray(mels, dtype=np.float32)
        return torch.from_numpy(np.transpose(mels.reshape(*mels.shape, 1), (0, 3, 1, 2))).to(self.device)

    def _encode(self, faces, alone=False):
        """List of N (96, 96, 6) uint8 inputs -> the 7 encoder outputs (N', C, H, W) as a tuple.

        A single face is encoded twice over in one pass (see `pass_sizes`) unless `alone`.
        """
        batch = np.stack(faces if alone or len(faces) > 1 else faces * 2)  # (N', 96, 96, 6)
        self.encoded_faces += len(faces)
        return tuple(self.model.encode_face(self._faces_tensor(batch)))

    def _cache(self, key, block, row):
        """Remember where `key`'s encoder outputs are: row `row` of the encoder pass `block`."""
        if id(block) not in self._blocks:
            size = sum(f.numel() * f.element_size() for f in block)
            if self._feature_bytes + size > self.feature_cache_bytes:
                return
            self._blocks[id(block)] = block
            self._feature_bytes += size
        self._features[key] = (block, row)

    @staticmethod
    def _gather(rows):
        """Encoder outputs for a pass from (block, row) per face: views of runs of rows, joined.

        Whole passes of new faces, and replays of a looping video, are one or two runs, so
        this rarely copies more than a pass worth of features.
        """
        runs = []  # [block, first row, end row]
        for block, row in rows:
            if runs and runs[-1][0] is block and runs[-1][2] == row:
                runs[-1][2] += 1
            else:
                runs.append([block, row, row + 1])
        levels = zip(*[tuple(f[a:b] for f in block) for block, a, b in runs])
        return [parts[0] if len(parts) == 1 else torch.cat(parts, dim=0) for parts in levels]

    def has_features(self, key):
        return key is not None and key in self._features

    def _passes(self, n):
        sizes = pass_sizes(n, self.micro_batch)
        starts = np.cumsum([0] + sizes)
        return [range(a, b) for a, b in zip(starts[:-1], starts[1:])]

    @torch.inference_mode()
    def __call__(self, mels, faces, keys=None):
        """mels (B, 80, 16) float32; faces: list of (96, 96, 6) uint8 generator inputs, None
        where an earlier face of the same key is cached or in this call; keys: one hashable per
        face, or None (never reused) -> (B, 96, 96, 3) uint8 BGR faces."""
        keys = list(keys) if keys is not None else [None] * len(mels)
        if len(mels) == 1 and faces[0] is None:
            raise ValueError("a batch of one face needs its input (it is encoded alone, as the reference does)")
        in_call = {}  # key -> (block, row) of faces encoded during this call
        out = []
        with self._autocast():
            for part in self._passes(len(mels)):
                todo, todo_keys = [], set()
                for i in part:
                    key = keys[i]
                    if len(mels) == 1 or key is None or not (
                            key in self._features or key in in_call or key in todo_keys):
                        todo.append(i)
                        todo_keys.add(key)
                rows = {}
                if todo:
                    block = self._encode([faces[i] for i in todo], alone=len(mels) == 1)
                    for row, i in enumerate(todo):
                        rows[i] = (block, row)
                        if keys[i] is not None and len(mels) > 1:
                            in_call[keys[i]] = (block, row)
                            self._cache(keys[i], block, row)
                skips = self._gather([rows[i] if i in rows else in_call.get(keys[i]) or self._features[keys[i]]
                                      for i in part])  # 7 x (b, C, H, W)
                mel = self._mels_tensor(mels[part.start:part.stop])  # (b, 1, 80, 16)
                pred = self.model.decode(self.model.audio_encoder(mel), skips)  # (b, 3, 96, 96)
                pred = pred.float().cpu().numpy().transpose(0, 2, 3, 1) * 255.
                out.append(pred.astype(np.uint8))
        return np.concatenate(out)
