"""The pieces of Wav2Lip inference (SPEC section 9), each reproducing the published algorithm.

    starts = mel_chunk_starts(mel.shape[1], fps)        # one 16-frame mel window per output frame
    smoother = BoxSmoother()                            # the reference's 5-box smoothing, streamed
    runner = GeneratorRunner(model, device, "fp32")     # batched generator, frame-exact
    faces = runner(mel_windows, face_crops, keys)       # (B, S, S, 3) uint8 BGR, S = runner.img_size
    paste_face(frame, faces[0], (y1, y2, x1, x2))

The face size S is the loaded generator's (96 or 288: its checkpoint records it, HD.md);
crops are resized to S, the lower half is rows S/2.., and the generated face is pasted back.

Nothing here reads media: streaming.py feeds these from videos, inference.py is the CLI.
"""
import os
from collections import deque

import numpy as np
import torch

from hparams import MEL_FRAMES_PER_SECOND, SYNCNET_MEL_STEP_SIZE, hparams

SMOOTHING_WINDOW = 5  # boxes averaged per frame (the reference's T=5)
PRECISIONS = ("fp32", "bf16", "fp16")


def mel_chunk_starts(mel_frames, fps, final_window=True):
    """First mel frame of each output frame's 16-frame window, exactly as the reference chunks.

    Window i starts at int(i * 80 / fps); the last window is the final 16 mel
    frames, and chunking stops there. The published evaluation scripts stop
    before that last window (`final_window=False`).
    """
    if mel_frames < SYNCNET_MEL_STEP_SIZE:
        raise ValueError(f"{mel_frames} mel frames, fewer than one {SYNCNET_MEL_STEP_SIZE}-frame window")
    step = MEL_FRAMES_PER_SECOND / fps
    starts = []
    i = 0
    while True:
        start = int(i * step)
        if start + SYNCNET_MEL_STEP_SIZE > mel_frames:
            if final_window:
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
    """The Wav2Lip generator of checkpoint `path` at the file's face size (model.img_size), on
    `device`, in eval mode.

    Built on the meta device and given the checkpoint's tensors (assign=True):
    no random initialisation, and one copy of the weights in memory instead of two.
    """
    from checkpoints import load_sized_model
    from models import Wav2Lip
    model, _ = load_sized_model(Wav2Lip, path, device, assign=True)
    return model.eval()


def paste_face(frame, face, coords):
    """Resize the generated face (96x96 or 288x288) to the box (y1, y2, x1, x2) and write it into `frame`."""
    import cv2
    y1, y2, x1, x2 = coords
    frame[y1:y2, x1:x2] = cv2.resize(face, (x2 - x1, y2 - y1))
    return frame


def face_input(crop, img_size=hparams.img_size):
    """A face crop -> the generator's (S, S, 6) uint8 input, S = img_size (the generator's):
    (lower half, rows S/2.., zeroed; full)."""
    import cv2
    return masked_input(cv2.resize(crop, (img_size, img_size)))


def masked_input(face):
    """A face crop already resized to (S, S, 3) -> the generator's (S, S, 6) input."""
    masked = face.copy()
    masked[face.shape[0] // 2:] = 0
    return np.concatenate((masked, face), axis=2)


def default_pass_size(device, precision, batch_size, img_size=hparams.img_size):
    """Faces per generator pass: on CPU one chunk (`high_res_chunk`): 8 in fp32 and 16 in
    16-bit at 96, 2 at 288; on a GPU, the whole batch. Passes of 32 with chunks of 8 run the
    fp32 96 generator about 10% faster but take ~150 MB more memory (glibc's heap fragments)."""
    if torch.device(device).type != "cpu":
        return batch_size
    return high_res_chunk(device, precision, img_size)


# The decoder's largest activation per face: its last block's output joined to the first
# encoder block's (64 + 16 channels at the full face size, both networks).
HIGH_RES_CHANNELS = 80
# Activation bytes one chunk may take on CPU: under glibc's largest heap block (32 MB, see
# inference.reuse_freed_memory); 8 faces in fp32 and 16 in 16-bit at 96.
CHUNK_BYTES = 24 * 10**6


def high_res_chunk(device, precision, img_size=hparams.img_size):
    """Faces per chunk of the decoder's last two blocks (48x48 and 96x96 at 96; 144x144 and
    288x288 at 288): on CPU, as many as keep each activation within CHUNK_BYTES, and at least
    2 (see `pass_sizes`): 8 in fp32 and 16 in 16-bit at 96, 2 at 288 (26.5 MB per face in
    fp32); larger chunks page-fault fresh memory at every layer. The other layers run on the
    whole pass, where batching amortises their large weights. None (no chunks) on a GPU."""
    if torch.device(device).type != "cpu":
        return None
    per_face = HIGH_RES_CHANNELS * img_size * img_size * (4 if precision == "fp32" else 2)
    return max(2, CHUNK_BYTES // per_face)


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


@torch.no_grad()
def fold_batch_norms(model):
    """Fold every eval-mode BatchNorm2d into the (transposed) convolution before it, in place.

    y = (conv(x) - mean) / sqrt(var + eps) * gamma + beta is a convolution with
    weights scaled per output channel: one layer instead of two. The numbers
    change in the last bits, so only the reduced-precision paths use it.
    """
    for sequential in [m for m in model.modules() if isinstance(m, torch.nn.Sequential)]:
        for i in range(1, len(sequential)):
            conv, norm = sequential[i - 1], sequential[i]
            convolutions = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
            if not (isinstance(norm, torch.nn.BatchNorm2d) and isinstance(conv, convolutions)):
                continue
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            out_axis = 1 if isinstance(conv, torch.nn.ConvTranspose2d) else 0
            shape = [1] * conv.weight.dim()
            shape[out_axis] = -1
            conv.weight.mul_(scale.reshape(shape))
            bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
            conv.bias = torch.nn.Parameter((bias - norm.running_mean) * scale + norm.bias)
            sequential[i] = torch.nn.Identity()
    return model


def _gather(sources):
    """The decoder's skip inputs for a pass from one (features, row) per face: runs of rows of
    the same features become one slice, and the slices are joined per level.

    A pass of new faces is one slice of its encoder batch: no copy at all.
    """
    runs = []  # [features, first row, end row]
    for features, row in sources:
        if runs and runs[-1][0] is features and runs[-1][2] == row:
            runs[-1][2] += 1
        else:
            runs.append([features, row, row + 1])
    levels = zip(*[tuple(f[a:b] for f in features) for features, a, b in runs])
    return [parts[0] if len(parts) == 1 else torch.cat(parts, dim=0) for parts in levels]


class FeatureStore:
    """The face encoder's outputs for faces that will come again, kept in a temporary file.

    One face's outputs take 1.2 MB in fp32 at 96 (7 of them), 9.3 MB at 288 (9),
    so a looping video of a few hundred frames would need hundreds of MB (GB at
    288) of memory; a file keeps the process's memory flat, and reading a face
    back (from the page cache, usually) costs far less than encoding it. The
    file is deleted on close. Beyond `max_bytes` (2 GB: ~1800 frames in fp32 at
    96, ~230 at 288) faces are not stored, and are encoded again when they come back.
    """

    def __init__(self, max_bytes=2 << 30):
        self._file = None
        self._index = {}  # key -> (offset, [(shape (C, H, W), dtype)] per level)
        self.max_bytes = int(max_bytes)
        self.bytes = 0

    def __contains__(self, key):
        return key in self._index

    def put(self, key, features):
        """features: the encoder outputs (C, H, W) of one face, channels_last in memory."""
        import tempfile
        size = sum(f.numel() * f.element_size() for f in features)
        if self.bytes + size > self.max_bytes:
            return
        self.bytes += size
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="wav2lip-features-")
        offset = self._file.seek(0, os.SEEK_END)
        layout = []
        for f in features:
            hwc = f.permute(1, 2, 0).contiguous().cpu()  # the channels_last bytes, as they are
            self._file.write(hwc.view(torch.uint8).numpy().tobytes())
            layout.append((tuple(f.shape), f.dtype))
        self._index[key] = (offset, layout)

    def get(self, key, device):
        """The encoder outputs of `key` as (1, C, H, W) channels_last tensors on `device`."""
        offset, layout = self._index[key]
        self._file.seek(offset)
        features = []
        for (c, h, w), dtype in layout:
            data = bytearray(self._file.read(c * h * w * dtype.itemsize))
            hwc = torch.frombuffer(data, dtype=dtype).reshape(1, h, w, c)
            features.append(hwc.permute(0, 3, 1, 2).to(device))
        return features

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
        self._index.clear()
        self.bytes = 0


class GeneratorRunner:
    """Runs the Wav2Lip generator on batches, frame-exact with the reference in fp32.

    Each face goes through the face encoder once per key: faces that repeat
    (a still image, a looping video) reuse the encoder outputs stored under
    their key (in a temporary file, see FeatureStore). Large batches are split
    into passes of `micro_batch` faces (see `pass_sizes`), and the decoder's
    last two blocks (48x48 and 96x96 at 96, 144x144 and 288x288 at 288) of a
    pass into chunks of `chunk` faces (default `high_res_chunk` for the model's
    size), which bounds memory. Any pass or chunk size gives the same faces.
    Faces are model.img_size square (96 or 288, the checkpoint's).

    precision: "fp32" (faithful), "bf16" (fast on CPUs with AMX or AVX512-BF16,
    and on recent GPUs) or "fp16" (CUDA only). The runner takes `model` over:
    reduced precision folds its BatchNorms and casts it in place.

    fold: fold the BatchNorms and run channels_last (default: in reduced precision only).

    exact_lone_faces: a call with a single face encodes it alone, as the reference's
    batch holding one face does (its last bits differ from a batch's). A live stream,
    which generates frames one at a time, sets it False: a single face then reuses its
    stored encoder outputs too (the frames differ by at most one grey level).
    """

    def __init__(self, model, device, precision="fp32", micro_batch=None, chunk=None, exact_lone_faces=True,
                 fold=None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "fp16" and device.type != "cuda":
            raise ValueError("fp16 needs a CUDA device; use bf16 on CPU")
        self.device = device
        self.precision = precision
        self.img_size = model.img_size  # faces in and out are img_size square
        self.micro_batch = max(1, int(micro_batch or default_pass_size(device, precision, 128, self.img_size)))
        self.chunk = chunk if chunk is not None else high_res_chunk(device, precision, self.img_size)
        self.model = model.to(device).eval()
        # Inference only, so ReLUs may overwrite their input: one activation-sized write less
        # per layer, and the same numbers.
        for module in self.model.modules():
            if isinstance(module, torch.nn.ReLU):
                module.inplace = True
        self._dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
        self.folded = precision != "fp32" if fold is None else bool(fold)
        if self.folded:
            # Reduced precision changes the numbers anyway: fold each BatchNorm into its
            # convolution (in fp32), then cast once and run channels_last, the fast layout.
            # (fp32 may ask for it too: ~1.5x on CPUs, frames a grey level or two from exact.)
            fold_batch_norms(self.model)
            self.model = self.model.to(dtype=self._dtype, memory_format=torch.channels_last)
        self._features = FeatureStore()  # encoder outputs of faces that come again
        self.exact_lone_faces = bool(exact_lone_faces)
        self.encoded_faces = 0  # faces that went through the face encoder (for tests/benchmarks)

    def new_video(self):
        """Forget the stored encoder outputs: their keys are frame indices of the last video."""
        self._features.close()

    def _faces_tensor(self, batch):
        """(N, S, S, 6) uint8 -> (N, 6, S, S) float in [0, 1], in NHWC memory (channels_last).

        The reference's np.transpose view keeps NHWC memory and torch.FloatTensor keeps its
        strides, so the published code runs the whole network channels_last: doing the same
        gives the same kernels and bit-identical numbers. float32 / 255 equals the
        reference's float64 / 255. cast to float32 (checked for all 256 values).
        """
        x = torch.from_numpy(batch.astype(np.float32) / np.float32(255)).permute(0, 3, 1, 2)
        return x.to(self.device, self._dtype)

    def _mels_tensor(self, mels):
        """(N, 80, 16) -> (N, 1, 80, 16) with the reference's strides, (1280, 1, 16, 1).

        Even the stride of the size-one channel dimension picks oneDNN's kernel:
        np.newaxis (stride 0) gives other last bits than the reference's reshape.
        """
        mels = np.ascontiguousarray(mels, dtype=np.float32)
        return torch.from_numpy(np.transpose(mels.reshape(*mels.shape, 1), (0, 3, 1, 2))).to(self.device, self._dtype)

    def _encode(self, faces, alone=False):
        """List of N (S, S, 6) uint8 inputs -> the encoder outputs (N', C, H, W) as a tuple
        (7 at 96, 9 at 288).

        A single face is encoded twice over in one pass (see `pass_sizes`) unless `alone`.
        """
        batch = np.stack(faces if alone or len(faces) > 1 else faces * 2)  # (N', S, S, 6)
        self.encoded_faces += len(faces)
        return tuple(self.model.encode_face(self._faces_tensor(batch)))

    @torch.inference_mode()
    def store_features(self, faces, keys):
        """Encode the faces (generator inputs, as __call__ takes them) whose keys are not stored
        yet, in passes, and store their encoder outputs: later calls with those keys skip the
        encoder (live.Engine.warm_up, for an avatar's frames)."""
        todo = [(face, key) for face, key in zip(faces, keys) if key not in self._features]
        for part in self._passes(len(todo)):
            block = self._encode([todo[i][0] for i in part])
            for row, i in enumerate(part):
                self._features.put(todo[i][1], [f[row] for f in block])

    def has_features(self, key):
        return key is not None and key in self._features

    def _decode(self, audio_embedding, skips):
        """Wav2Lip.decode, with the last two blocks on chunks of `self.chunk` faces (none of a
        single face, see `pass_sizes`): yields (c, 3, S, S) outputs in order."""
        blocks, skips = self.model.face_decoder_blocks, list(reversed(skips))
        high_res = len(blocks) - 2  # the last two blocks upsample to S/2 and S
        x = audio_embedding
        for block, skip in zip(blocks[:high_res], skips[:high_res]):
            x = torch.cat((block(x), skip), dim=1)
        start = 0
        for size in pass_sizes(len(x), self.chunk) if self.chunk else [len(x)]:
            y = x[start:start + size]
            for block, skip in zip(blocks[high_res:], skips[high_res:]):
                y = torch.cat((block(y), skip[start:start + size]), dim=1)
            yield self.model.output_block(y)
            start += size

    def _passes(self, n):
        sizes = pass_sizes(n, self.micro_batch)
        starts = np.cumsum([0] + sizes)
        return [range(a, b) for a, b in zip(starts[:-1], starts[1:])]

    @torch.inference_mode()
    def __call__(self, mels, faces, keys=None):
        """mels (B, 80, 16) float32; faces: list of (S, S, 6) uint8 generator inputs (face_input
        at self.img_size), None where an earlier face of the same key is cached or in this call;
        keys: one hashable per face, or None (never reused) -> (B, S, S, 3) uint8 BGR faces."""
        keys = list(keys) if keys is not None else [None] * len(mels)
        alone = len(mels) == 1 and self.exact_lone_faces  # encoded alone, never from the store
        if alone and faces[0] is None:
            raise ValueError("a batch of one face needs its input (it is encoded alone, as the reference does)")
        out = []
        for part in self._passes(len(mels)):
            # Encode the faces met for the first time (a lone face always: see pass_sizes).
            todo, first_of_key = {}, {}  # index -> row of this pass's encoder batch; key -> index
            for i in part:
                key = keys[i]
                if not alone and key is not None and (key in self._features or key in first_of_key):
                    continue
                todo[i] = len(todo)
                if not alone and key is not None:
                    first_of_key[key] = i
            block = self._encode([faces[i] for i in todo], alone=alone) if todo else None
            for key, i in first_of_key.items():
                self._features.put(key, [f[todo[i]] for f in block])
            sources, stored = [], {}  # per face: (features, row) to slice from; key -> read back
            for i in part:
                first = i if i in todo else first_of_key.get(keys[i])
                if first is not None:
                    sources.append((block, todo[first]))
                    continue
                if keys[i] not in stored:
                    stored[keys[i]] = self._features.get(keys[i], self.device)
                sources.append((stored[keys[i]], 0))
            skips = _gather(sources)  # 7 (9 at 288) x (b, C, H, W)
            mel = self._mels_tensor(mels[part.start:part.stop])  # (b, 1, 80, 16)
            for pred in self._decode(self.model.audio_encoder(mel), skips):  # (c, 3, S, S) each
                pred = pred.float().cpu().numpy().transpose(0, 2, 3, 1) * 255.
                out.append(pred.astype(np.uint8))
        return np.concatenate(out)
