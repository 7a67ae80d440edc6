"""Hyperparameters of Wav2Lip, with the published defaults.

Every script takes `--hparams "name=value,name=value"` to override them:

    python wav2lip_train.py ... --hparams "batch_size=8,syncnet_wt=0.03"

Values are never mutated during a run: `parse_overrides` returns a new HParams.
"""
import dataclasses
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class HParams:
    # Audio (SPEC section 1). 16000 / 200 = 80 mel frames per second.
    num_mels: int = 80
    rescale: bool = True  # declared by the reference, not applied by melspectrogram
    rescaling_max: float = 0.9
    use_lws: bool = False
    n_fft: int = 800
    hop_size: int = 200
    win_size: int = 800
    sample_rate: int = 16000
    frame_shift_ms: float | None = None
    signal_normalization: bool = True
    allow_clipping_in_normalization: bool = True
    symmetric_mels: bool = True
    max_abs_value: float = 4.0
    preemphasize: bool = True
    preemphasis: float = 0.97
    min_level_db: float = -100
    ref_level_db: float = 20
    fmin: float = 55
    fmax: float = 7600

    # Video / windows (SPEC section 8). img_size 96 is the published system, 288 the HD one
    # (HD.md): networks, dataset crops and samples at that size, lower half = rows img_size/2..
    img_size: int = 96
    fps: int = 25

    # Generator training.
    batch_size: int = 16
    initial_learning_rate: float = 1e-4
    nepochs: int = 200000000000000000
    num_workers: int = 16
    checkpoint_interval: int = 3000
    eval_interval: int = 3000
    save_optimizer_state: bool = True
    syncnet_wt: float = 0.0  # initial sync-loss weight; raised once eval sync loss < 0.75

    # Expert (lip-sync discriminator) training.
    syncnet_batch_size: int = 64
    syncnet_lr: float = 1e-4
    syncnet_eval_interval: int = 10000
    syncnet_checkpoint_interval: int = 10000

    # Visual quality discriminator (hq_wav2lip_train.py).
    disc_wt: float = 0.07
    disc_initial_learning_rate: float = 1e-4

    # Wasserstein critic (wloss_hq_wav2lip_train.py, WGAN-GP): gradient-penalty weight lambda and
    # the Adam betas of generator and critic. The fork's betas are the default; the paper's are (0, 0.9).
    wgan_gp_weight: float = 10.0
    wgan_beta1: float = 0.5
    wgan_beta2: float = 0.999

    # Trainers (color_syncnet_train.py, wav2lip_train.py, hq_wav2lip_train.py): the values the
    # reference hard-codes in its scripts, made explicit.
    syncnet_switch_threshold: float = 0.75  # eval sync loss below this raises syncnet_wt ...
    syncnet_wt_after_switch: float = 0.01  # ... to this (wav2lip_train.py)
    hq_syncnet_wt_after_switch: float = 0.03  # ... or this (hq_wav2lip_train.py)
    eval_steps: int = 700  # eval batches, wav2lip_train.py
    hq_eval_steps: int = 300  # eval batches, hq_wav2lip_train.py
    syncnet_eval_steps: int = 1400  # eval batches, color_syncnet_train.py
    max_sample_attempts: int = 100  # consecutive unusable draws before a dataset is an error
    mel_cache_on_disk: bool = True  # keep each clip's mel as <clip>/mel_<settings>.npy
    seed: int = 0
    log_interval: int = 1  # training steps between rows of log.csv

    def values(self):
        return dataclasses.asdict(self)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


hparams = HParams()

# Derived constants: one home for each, checked against the audio settings.
MEL_FRAMES_PER_SECOND = hparams.sample_rate // hparams.hop_size  # 80
assert MEL_FRAMES_PER_SECOND == 80
SYNCNET_T = 5  # frames per window
SYNCNET_MEL_STEP_SIZE = 16  # mel frames per window (0.2 s)
IMG_SIZES = (96, 288)  # the face sizes models/ has layouts for
_CHOICES = {"img_size": IMG_SIZES}


def _convert(name, text, default):
    kind = type(default)
    text = text.strip()
    if default is None or (kind is float):
        if default is None and text.lower() == "none":
            return None
        return float(text)
    if kind is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if kind is int:
        value = float(text)
        if value != int(value):
            raise ValueError(f"expected an integer, got {text!r}")
        return int(value)
    return kind(text)


def parse_overrides(text, base=hparams):
    """Return a copy of `base` with "name=value,name=value" applied.

    Unknown names and values of the wrong type raise ValueError with a message
    naming the entry.
    """
    if not text:
        return base
    known = base.values()
    changes = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise ValueError(f"--hparams: expected name=value, got {item!r}")
        name, value = (part.strip() for part in item.split("=", 1))
        if name not in known:
            raise ValueError(f"--hparams: unknown hyperparameter {name!r}")
        try:
            changes[name] = _convert(name, value, known[name])
            if name in _CHOICES and changes[name] not in _CHOICES[name]:
                raise ValueError(f"expected one of {', '.join(map(str, _CHOICES[name]))}, got {value!r}")
        except ValueError as e:
            raise ValueError(f"--hparams: bad value for {name}: {e}") from None
    return base.replace(**changes)


def override_names(text):
    """The names an --hparams string sets (parse_overrides checks them and their values)."""
    return {item.split("=", 1)[0].strip() for item in (text or "").split(",") if "=" in item}


def get_image_list(data_root, split, filelists_dir="filelists"):
    """Clip folders listed in filelists/<split>.txt, joined to data_root.

    Text after a space on a line is ignored, as in LRS2's own list files.
    """
    path = os.path.join(filelists_dir, f"{split}.txt")
    with open(path) as f:
        names = [line.split()[0] for line in f if line.strip()]
    return [os.path.join(data_root, name) for name in names]
