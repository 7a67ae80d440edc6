"""GFPGAN v1.4 face restoration: load the published weights, restore a batch of face crops.

    from enhancer import load_gfpgan, restore
    model = load_gfpgan("checkpoints/GFPGANv1.4.pth", device)   # one clear line if the file is bad
    sharp = restore(crops_bgr, model)                            # (N, S, S, 3) uint8 -> same
    sharp = restore(crops_bgr, model, dtype=torch.bfloat16)      # under autocast (fp32 weights)

Crops are square BGR uint8 of any size: resized to 512, normalised as GFPGAN
does (RGB, (x / 255 - 0.5) / 0.5), restored, clamped to [-1, 1] and resized
back. Blending the result into the frame is the caller's business.
"""
import contextlib
import os

import numpy as np
import torch
import torch.nn.functional as F

from checkpoints import CheckpointError, _describe, load_state_dict_strict, strip_module_prefix
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
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: GFPGAN weight file is empty")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, non-tensor objects...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint "
                              f"(truncated or corrupt?): {reason[:200]}") from None
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
