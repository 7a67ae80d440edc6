"""GFPGAN v1.4 face restoration: load the published weights, restore a batch of face crops.

    from enhancer import load_gfpgan, restore
    model = load_gfpgan("checkpoints/GFPGANv1.4.pth", device)   # one clear line if the file is bad
    sharp = restore(crops_bgr, model)                            # (N, S, S, 3) uint8 -> same
    sharp = restore(crops_bgr, model, dtype=torch.bfloat16)      # under autocast (fp32 weights)

Crops are square BGR uint8 of any size: resized to 512, normalised as GFPGAN
does (RGB, (x / 255 - 0.5) / 0.5), restored, clamped to [-1, 1] and resized
back.

The pass of inference.py --enhance gfpgan works on whole frames and their face boxes:

    for frame in enhance_frames(dub(..., with_coords=True), model, dtype, batch_size=4):
        writer.write(frame)

Around each box, a square of FACE_SCALE times its longer side (box centre at
FACE_CENTRE of the way down) approximates GFPGAN's 512x512 FFHQ framing; it is
restored and blended back through blending.lower_face_mask over the box, so
only the lower face changes (see face_square).
"""
import contextlib
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from checkpoints import CheckpointError, _describe, load_state_dict_strict, read_torch_file, strip_module_prefix
from models.gfpgan import OUT_SIZE, GFPGANv1Clean

DEFAULT_WEIGHTS = os.path.join("checkpoints", "GFPGANv1.4.pth")
WEIGHTS_URL = "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth"
WEIGHT_KEYS = ("params_ema", "params")   # the published file holds params_ema; training files also params


def read_gfpgan_state(path):
    """The state dict inside a GFPGAN weight file (`params_ema`, else `params`), on CPU.

    Every failure is a CheckpointError naming the file and what is wrong.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: GFPGAN weights not found (download GFPGANv1.4.pth from {WEIGHTS_URL})")
    data = read_torch_file(path, what="GFPGAN weight file")
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict with 'params_ema', found {type(data).__name__}")
    key = next((k for k in WEIGHT_KEYS if k in data), None)
    if key is None:
        inner = data.get("state_dict", data)
        found = _describe(inner) if isinstance(inner, dict) else None
        hint = f"; the file looks like a {found}" if found else ""
        keys = ", ".join(map(str, list(data)[:3])) or "none"
        raise CheckpointError(f"{path}: not a GFPGAN weight file: no 'params_ema' or 'params' entry "
                              f"(top-level keys: {keys}){hint}")
    state = data[key]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{path}: '{key}' is not a dict of tensors")
    return strip_module_prefix(state)


def load_gfpgan(path=DEFAULT_WEIGHTS, device="cpu"):
    """GFPGANv1Clean with the weights of `path` loaded strict, on `device`, in eval mode."""
    state = read_gfpgan_state(path)
    model = GFPGANv1Clean()
    load_state_dict_strict(model, state, os.fspath(path))
    return model.to(device).eval()


def _resize(x, size):
    """(N, C, H, W) float to (N, C, size, size): bilinear, antialiased when shrinking."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < x.shape[-1])


@torch.inference_mode()
def restore(faces, model, dtype=torch.float32, batch_size=4, randomize_noise=False):
    """Restore BGR uint8 face crops with GFPGAN; returns crops of the same sizes (uint8, BGR).

    faces: an (N, S, S, 3) array, or a list of (S_i, S_i, 3) arrays (then a list is returned).
    dtype: float32, or bfloat16 / float16: autocast when the model's weights are
    float32, a plain run when the model was cast to that dtype.
    randomize_noise: the original's fresh decoder noise instead of the stored buffers.
    """
    as_list = isinstance(faces, (list, tuple))
    crops = list(faces)
    for i, face in enumerate(crops):
        if face.dtype != np.uint8 or face.ndim != 3 or face.shape[2] != 3 or face.shape[0] != face.shape[1]:
            raise ValueError(f"face {i}: expected a square BGR uint8 crop (S, S, 3), "
                             f"got {face.dtype} {face.shape}")
    param = next(model.parameters())
    device, weight_dtype = param.device, param.dtype
    use_autocast = dtype != weight_dtype
    if use_autocast and weight_dtype != torch.float32:
        raise ValueError(f"restore: dtype {dtype} with a model in {weight_dtype} (use float32 weights to autocast)")
    out = []
    for start in range(0, len(crops), batch_size):
        chunk = crops[start:start + batch_size]
        x = torch.stack([_resize(_to_tensor(face, device), OUT_SIZE)[0] for face in chunk])  # (B, 3, 512, 512)
        x = (x / 255 - 0.5) / 0.5
        with torch.autocast(device.type, dtype=dtype) if use_autocast else contextlib.nullcontext():
            y, _ = model(x.to(weight_dtype), return_rgb=False, randomize_noise=randomize_noise)
        y = (y.float().clamp(-1, 1) + 1) * 127.5                    # (B, 3, 512, 512), RGB in [0, 255]
        for face, img in zip(chunk, y):
            img = _resize(img[None], face.shape[0])[0]
            out.append(img.flip(0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy())
    if as_list:
        return out
    return np.stack(out) if out else np.zeros((0,) + tuple(np.shape(faces))[1:], np.uint8)


def _to_tensor(face_bgr, device):
    """(S, S, 3) BGR uint8 -> (1, 3, S, S) RGB float32 in [0, 255]."""
    return torch.from_numpy(np.ascontiguousarray(face_bgr[:, :, ::-1])).to(device).permute(2, 0, 1)[None].float()


# The square around a face box that GFPGAN restores. GFPGAN was trained on FFHQ crops aligned
# by 5 landmarks (facexlib's 512 template: eyes at y = 240, mouth corners at y = 371, eyes
# 127 px apart). In an S3FD box with Wav2Lip's pads, the eyes sit about 0.38 of the way down and
# the mouth about 0.78, the eyes about 0.4 box widths apart: 131 px from eyes to mouth over 0.4
# box heights and 127 px between the eyes over 0.4 box widths both give a box of ~320 px, 1/1.6
# of the crop, with its centre about 25 px (0.05) below the crop's centre. No landmark model
# here: no rotation, one scale for both axes (the box's longer side).
FACE_SCALE = 1.6    # crop side / the box's longer side
FACE_CENTRE = 0.55  # the box's centre, as a fraction of the way down the crop
PAD_BGR = (135, 133, 132)  # outside the frame: facexlib's border value for GFPGAN's crops


def face_square(coords, scale=FACE_SCALE, centre=FACE_CENTRE):
    """The square (top, bottom, left, right) that GFPGAN restores around face box (y1, y2, x1, x2),
    in frame coordinates (it may reach outside the frame); it always contains the box."""
    y1, y2, x1, x2 = coords
    side = max(int(round(scale * max(y2 - y1, x2 - x1))), y2 - y1, x2 - x1)
    top = int(np.floor((y1 + y2) / 2 - centre * side + 0.5))
    left = int(np.floor((x1 + x2) / 2 - side / 2 + 0.5))
    top, left = min(max(top, y2 - side), y1), min(max(left, x2 - side), x1)  # the box stays inside
    return top, top + side, left, left + side


def crop_square(frame, square):
    """frame[top:bottom, left:right] as a (side, side, 3) crop, PAD_BGR where it leaves the frame."""
    import cv2
    top, bottom, left, right = square
    height, width = frame.shape[:2]
    inner = frame[max(top, 0):min(bottom, height), max(left, 0):min(right, width)]
    return cv2.copyMakeBorder(inner, max(0, -top), max(0, bottom - height), max(0, -left),
                              max(0, right - width), cv2.BORDER_CONSTANT, value=PAD_BGR)


def enhance_frame(frame, restored, square, coords):
    """A copy of `frame` with the crop `restored` (of `square`) blended in over face box `coords`
    through blending.lower_face_mask: pixels where the mask is 0 stay exactly the frame's."""
    from blending import blend_face
    y1, y2, x1, x2 = coords
    top, _, left, _ = square
    return blend_face(frame.copy(), restored[y1 - top:y2 - top, x1 - left:x2 - left], coords)


def enhance_frames(frames, model, dtype=torch.float32, batch_size=4, times=None, bar=None, max_frames=None):
    """Frames of (frame, coords or None) pairs (streaming.dub(..., with_coords=True)), enhanced, in order.

    Frames are taken until `batch_size` of them have a face (or `max_frames`,
    default 4 x batch_size, are held: long stretches without a face stay in
    bounded memory), their squares (face_square) restored in one batch and
    blended back (enhance_frame); frames without a face pass unchanged. times: a
    streaming.StageTimes ("enhance"); bar: a tqdm advanced per frame.
    """
    frames = iter(frames)
    max_frames = max_frames or 4 * batch_size
    while True:
        batch, faces = [], 0
        for frame, coords in frames:
            batch.append((frame, coords))
            faces += coords is not None
            if faces == batch_size or len(batch) >= max_frames:
                break
        if not batch:
            return
        start = time.perf_counter()
        squares = {i: face_square(coords) for i, (_, coords) in enumerate(batch) if coords is not None}
        restored = restore([crop_square(batch[i][0], square) for i, square in squares.items()], model,
                           dtype=dtype, batch_size=batch_size)
        out = [frame for frame, _ in batch]
        for (i, square), face in zip(squares.items(), restored):
            out[i] = enhance_frame(out[i], face, square, batch[i][1])
        if times is not None:
            times.add("enhance", time.perf_counter() - start)
        for frame in out:
            yield frame
            if bar is not None:
                bar.update(1)
