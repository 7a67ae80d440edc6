"""Checkpoint I/O for every script: the published format, read and written.

Published files are either `{"state_dict", "optimizer", "global_step",
"global_epoch"}` dicts (wav2lip.pth, wav2lip_gan.pth, lipsync_expert.pth,
visual_quality_disc.pth) or bare state dicts (s3fd.pth), with or without the
`module.` prefix DataParallel adds. All read with `weights_only=True`.
Every failure is a CheckpointError naming the file and what is wrong.

Checkpoints of the Wav2Lip networks carry their face size: save_checkpoint
records `img_size` (96 or 288); `checkpoint_img_size` reads it back (a file
without the record, such as the published ones, is told by its layout: 96 for
those). `load_sized_model(Wav2Lip, path)` builds the network of the file's size.
"""
import os
import re

import torch

from cli import UserError
from fileio import atomic_output

# A key only one network has, to tell the user which network a file holds.
_SIGNATURES = {
    "output_block.1.weight": "Wav2Lip generator",
    "binary_pred.0.weight": "Wav2Lip_disc_qual (visual quality discriminator)",
    "face_encoder.0.conv_block.0.weight": "SyncNet_color (lip-sync expert)",
    "conv1_1.weight": "S3FD face detector",
    "netcnnlip.0.weight": "SyncNet of syncnet_python (syncnet_v2.model)",
    "Mixed_7c.branch_pool.conv.weight": "FID InceptionV3 (pt_inception)",
}
# Keys only the 288 layouts have (HD.md): 9 face encoder blocks; the expert's 21 layers.
_HD_KEY_PREFIXES = ("face_encoder_blocks.8.", "face_encoder.20.")


class CheckpointError(UserError):
    pass


def strip_module_prefix(state_dict):
    """Remove the `module.` prefix that (Distributed)DataParallel adds to every key."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}


def _describe(state_dict):
    for key, name in _SIGNATURES.items():
        if key in state_dict:
            return name
    return None


def read_torch_file(path, device="cpu", mmap=False, what="checkpoint file"):
    """torch.load(weights_only=True) of `path`, every failure a CheckpointError naming the file.

    mmap=True maps the tensors of a zip-format file instead of reading them (for a
    quick look at the keys); legacy files are read whole.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: {what} not found")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: {what} is empty")
    try:
        try:
            return torch.load(path, map_location=device, weights_only=True, mmap=mmap)
        except RuntimeError:
            if not mmap:
                raise
            return torch.load(path, map_location=device, weights_only=True)  # a legacy-format file
    except Exception as e:  # truncated zip, bad pickle, non-tensor objects...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint "
                              f"(truncated or corrupt?): {reason[:200]}") from None


def load_checkpoint(path, device="cpu", mmap=False):
    """Read a checkpoint file onto `device` (see read_torch_file).

    Returns a dict with "state_dict" (prefix stripped) and whatever else the
    file holds; a bare state dict is wrapped as {"state_dict": ...}.
    """
    path = os.fspath(path)
    data = read_torch_file(path, device, mmap)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(data).__name__}")
    if "state_dict" in data:
        checkpoint = dict(data)
    else:
        checkpoint = {"state_dict": data}
    state_dict = checkpoint["state_dict"]
    if not isinstance(state_dict, dict) or not all(torch.is_tensor(v) for v in state_dict.values()):
        raise CheckpointError(f"{path}: 'state_dict' is not a dict of tensors")
    checkpoint["state_dict"] = strip_module_prefix(state_dict)
    return checkpoint


def load_state_dict_strict(model, state_dict, path):
    """model.load_state_dict(strict=True), with a one-line error naming the file and the mismatch."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [f"{k} {tuple(state_dict[k].shape)} != {tuple(expected[k].shape)}"
                   for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        network = type(model).__name__
        found = _describe(state_dict)
        hint = f"; the file looks like a {found}" if found and found.split()[0] != network else ""
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} shape mismatches (e.g. {wrong_shape[0]})")
        if any(k.endswith(".act.weight") for k in unexpected):
            hint += ("; the file's act.weight entries are PReLU slopes (the 2022 288x288 fork), "
                     "these networks use ReLU as the published ones")
        raise CheckpointError(f"{path}: does not fit {network}: {', '.join(parts)}{hint}")
    model.load_state_dict(state_dict, strict=True)


def checkpoint_img_size(checkpoint, path=None):
    """The face size (96 or 288) of a Wav2Lip, SyncNet_color or Wav2Lip_disc_qual checkpoint.

    `checkpoint` is a file path or a dict from load_checkpoint. The size is the
    `img_size` the file records; a file without it is told by its layout (the
    published files: 96).
    """
    from hparams import IMG_SIZES
    if not isinstance(checkpoint, dict):
        path = checkpoint
        checkpoint = load_checkpoint(path, mmap=True)
    recorded = checkpoint.get("img_size")
    if recorded is None:
        hd = any(k.startswith(_HD_KEY_PREFIXES) for k in checkpoint["state_dict"])
        return 288 if hd else 96
    if recorded not in IMG_SIZES:
        raise CheckpointError(f"{path or 'checkpoint'}: records img_size {recorded!r}; the networks "
                              f"here are {' or '.join(map(str, IMG_SIZES))}")
    return int(recorded)


def _check_size(network_name, checkpoint, path, required):
    described = _describe(checkpoint["state_dict"])
    if described and described.split()[0] != network_name:
        return  # another network altogether: the strict loading names it
    found = checkpoint_img_size(checkpoint, path)
    if found != required:
        raise CheckpointError(f"{path}: a {found}x{found} {network_name} checkpoint (img_size {found}), "
                              f"but a {required}x{required} one is required here (img_size {required})")


def check_checkpoint_size(model, checkpoint, path):
    """One line naming both sizes when a checkpoint of one face size meets a network of another."""
    required = getattr(unwrap(model), "img_size", None)
    if required is not None:
        _check_size(type(unwrap(model)).__name__, checkpoint, path, required)


def load_model(model, path, device="cpu"):
    """Load the weights of `path` into `model` strictly; returns the whole checkpoint dict.

    A network with an `img_size` takes only a checkpoint of that size (one-line error otherwise).
    """
    checkpoint = load_checkpoint(path, device)
    check_checkpoint_size(model, checkpoint, path)
    load_state_dict_strict(model, checkpoint["state_dict"], path)
    return checkpoint


def load_sized_model(network, path, device="cpu", img_size=None, assign=False):
    """(network of the checkpoint's size with its weights, on `device`; the checkpoint dict).

    network: Wav2Lip, SyncNet_color or Wav2Lip_disc_qual (the class). With img_size
    given, a checkpoint of another size is a one-line error naming both sizes.
    assign=True (for inference): the network is built on the meta device and takes the
    checkpoint's tensors themselves: no random initialisation, one copy of the weights.
    """
    import warnings
    checkpoint = load_checkpoint(path, device)
    if img_size is not None:
        _check_size(network.__name__, checkpoint, path, img_size)
    size = img_size or checkpoint_img_size(checkpoint, path)
    if not assign:
        model = network(img_size=size)
        load_state_dict_strict(model, checkpoint["state_dict"], path)
        return model.to(device), checkpoint
    with torch.device("meta"):
        model = network(img_size=size)
    with warnings.catch_warnings():  # copying into meta tensors is a no-op: only the checks matter
        warnings.simplefilter("ignore", UserWarning)
        load_state_dict_strict(model, checkpoint["state_dict"], path)  # one-line errors
    model.load_state_dict(checkpoint["state_dict"], strict=True, assign=True)
    return model, checkpoint


def load_published_weights(model, path, url, what):
    """Load the published file `path` (downloaded from `url` when missing) into `model`, strict.

    For files saved by older PyTorch, whose batch norms lack `num_batches_tracked`
    (unused in eval mode): those entries are taken from the model. Anything else
    must match, or a CheckpointError names the file and the mismatch.
    """
    from fileio import fetch_if_missing
    path = fetch_if_missing(path, url, what)
    state = load_checkpoint(path, "cpu")["state_dict"]
    for name, value in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            state.setdefault(name, value)
    load_state_dict_strict(model, state, path)
    return model


def unwrap(model):
    """The bare network inside DataParallel / DistributedDataParallel / torch.compile."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def atomic_save(obj, path):
    """torch.save to a temporary file beside `path`, then rename: never a half-written file."""
    with atomic_output(path, suffix=".pth") as tmp:
        torch.save(obj, tmp)


def save_checkpoint(path, model, optimizer=None, global_step=0, global_epoch=0, **extra):
    """Write the published format {state_dict, optimizer, global_step, global_epoch} (+ extra keys).

    Keys are written without the `module.` prefix; older readers ignore extra keys.
    A network with an `img_size` (the three Wav2Lip networks) has it recorded as "img_size".
    """
    network = unwrap(model)
    checkpoint = {
        "state_dict": network.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "global_step": int(global_step),
        "global_epoch": int(global_epoch),
        **({"img_size": int(network.img_size)} if hasattr(network, "img_size") else {}),
        **extra,
    }
    atomic_save(checkpoint, path)


def checkpoint_name(step, prefix=""):
    return f"{prefix}checkpoint_step{step:09d}.pth"


def latest_checkpoint(folder, prefix=""):
    """Path of the highest-step `<prefix>checkpoint_stepNNNNNNNNN.pth` in `folder`, or None."""
    if not os.path.isdir(folder):
        return None
    pattern = re.compile(rf"^{re.escape(prefix)}checkpoint_step(\d+)\.pth$")
    found = [(int(m.group(1)), name) for name in os.listdir(folder) if (m := pattern.match(name))]
    return os.path.join(folder, max(found)[1]) if found else None
