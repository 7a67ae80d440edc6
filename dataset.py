"""The training dataset shared by the three trainers (SPEC sections 7 and 8).

    from dataset import TalkingFaceDataset, load_split
    clips = load_split("lrs2_preprocessed", "train", filelists_dir="filelists", hp=hp)
    expert_data = TalkingFaceDataset(clips, hp, kind="syncnet")     # (x, mel, y, skips)
    generator_data = TalkingFaceDataset(clips, hp, kind="wav2lip")  # (x, indiv_mels, mel, y, skips)

A clip is a folder `<i>.jpg` (face crops, frame i) + `audio.wav`. Windows are
`SYNCNET_T` consecutive frames; frame f maps to mel frame int(80 * f / fps).
Images stay BGR as cv2 reads them (the published checkpoints were trained so).

Each clip's mel is computed once: kept in memory per loader process and, when
`hp.mel_cache_on_disk`, saved beside the audio as `mel_<settings hash>.npy`
(written atomically; reused by every worker and every later run).

Draws that cannot give a sample are counted by reason (returned with each
sample as `skips`) and retried; `hp.max_sample_attempts` failures in a row are
a DatasetError naming the counts, never an endless loop.
"""
import hashlib
import json
import os
import random
from collections import OrderedDict

import numpy as np
import torch

from cli import UserError
from fileio import atomic_output
from hparams import MEL_FRAMES_PER_SECOND, SYNCNET_MEL_STEP_SIZE, SYNCNET_T, get_image_list

SKIP_REASONS = ("window", "image", "audio", "mel")  # frame missing, unreadable jpg, unreadable wav, wav too short
MIN_FRAMES = 3 * SYNCNET_T + 1  # the reference skips clips with <= 3 * syncnet_T frames
AUDIO_SETTINGS = ("num_mels", "n_fft", "hop_size", "win_size", "sample_rate", "signal_normalization",
                  "allow_clipping_in_normalization", "symmetric_mels", "max_abs_value", "preemphasize",
                  "preemphasis", "min_level_db", "ref_level_db", "fmin", "fmax")
MEL_MEMORY_CLIPS = 512  # mels kept in memory per loader process (about 100 KB per 3 s clip)


class DatasetError(UserError):
    pass


def frame_id(path):
    """`.../123.jpg` -> 123."""
    return int(os.path.splitext(os.path.basename(path))[0])


def window_paths(clip, start, frame_ids):
    """Paths of frames start .. start+SYNCNET_T-1 of `clip`, or None if one is missing."""
    ids = range(start, start + SYNCNET_T)
    if any(i not in frame_ids for i in ids):
        return None
    return [os.path.join(clip, f"{i}.jpg") for i in ids]


def mel_start(frame, fps):
    """First mel frame of video frame `frame` (80 mel frames per second)."""
    return int(MEL_FRAMES_PER_SECOND * (frame / float(fps)))


def crop_mel(mel, frame, fps):
    """mel (T, 80) -> the (<=16, 80) window starting at video frame `frame`."""
    start = mel_start(frame, fps)
    return mel[start:start + SYNCNET_MEL_STEP_SIZE, :]


def segmented_mels(mel, start, fps):
    """The generator's per-frame mels: (SYNCNET_T, 80, 16), or None at the clip edges.

    As the reference: frame number start + 1, each crop taken at (number - 2),
    i.e. frames start-1 .. start+SYNCNET_T-2.
    """
    first = start + 1
    if first - 2 < 0:
        return None
    mels = []
    for i in range(first, first + SYNCNET_T):
        m = crop_mel(mel, i - 2, fps)
        if m.shape[0] != SYNCNET_MEL_STEP_SIZE:
            return None
        mels.append(m.T)
    return np.stack(mels)


def load_split(data_root, split, filelists_dir="filelists"):
    """Clip folders of `filelists_dir/<split>.txt`, joined to data_root; errors are one line."""
    path = os.path.join(filelists_dir, f"{split}.txt")
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: filelist not found (use --filelists_dir, or write one "
                           f"'<group>/<clip>' line per clip of {data_root})")
    clips = get_image_list(data_root, split, filelists_dir)
    if not clips:
        raise DatasetError(f"{path}: filelist is empty")
    return clips


def inspect_clip(clip):
    """(frame ids, problem) of a preprocessed clip folder; problem is None when it can be trained on.

    The one rule for a usable clip (the trainers' and generate_filelists.py's): the folder
    holds audio.wav and more than 3 * syncnet_T face crops named <i>.jpg.
    """
    if not os.path.isdir(clip):
        return set(), "missing folder"
    ids, has_audio = set(), False
    for name in os.listdir(clip):
        stem, ext = os.path.splitext(name)
        if ext.lower() == ".jpg" and stem.isdigit():
            ids.add(int(stem))
        has_audio = has_audio or name == "audio.wav"
    if not has_audio:
        return ids, "no audio.wav"
    if len(ids) < MIN_FRAMES:
        return ids, "too few frames"
    return ids, None


def scan_clips(clips, source):
    """{clip: frame ids} of the usable clips (`inspect_clip`).

    Raises DatasetError (with the reasons counted) if none is usable.
    """
    usable, problems = {}, {"missing folder": 0, "no audio.wav": 0, "too few frames": 0}
    for clip in clips:
        ids, problem = inspect_clip(clip)
        if problem is None:
            usable[clip] = ids
        else:
            problems[problem] += 1
    missing_folder, missing_audio, few_frames = problems.values()
    if not usable:
        raise DatasetError(
            f"{source}: none of the {len(clips)} clips is usable ({missing_folder} missing folders, "
            f"{missing_audio} without audio.wav, {few_frames} with fewer than {MIN_FRAMES} frames)")
    return usable


def read_window(paths, img_size):
    """BGR frames resized to img_size, or None if one cannot be read."""
    import cv2
    frames = []
    for path in paths:
        img = cv2.imread(path)
        if img is None:
            return None
        frames.append(cv2.resize(img, (img_size, img_size)))
    return frames


class MelCache:
    """Mel spectrogram (T, 80) of each clip's audio.wav, computed once per clip."""

    def __init__(self, hp):
        self.hp = hp
        settings = json.dumps({name: getattr(hp, name) for name in AUDIO_SETTINGS}, sort_keys=True)
        self.file_name = f"mel_{hashlib.sha1(settings.encode()).hexdigest()[:10]}.npy"
        self.memory = OrderedDict()

    def get(self, clip):
        """(T, 80) float32; raises audio.AudioError for unreadable or empty audio."""
        if clip in self.memory:
            self.memory.move_to_end(clip)
            return self.memory[clip]
        mel = self._load_or_compute(clip)
        self.memory[clip] = mel
        if len(self.memory) > MEL_MEMORY_CLIPS:
            self.memory.popitem(last=False)
        return mel

    def _load_or_compute(self, clip):
        import audio
        wav_path = os.path.join(clip, "audio.wav")
        cached = os.path.join(clip, self.file_name)
        if self.hp.mel_cache_on_disk and os.path.isfile(cached) \
                and os.path.getmtime(cached) >= os.path.getmtime(wav_path):
            try:
                return np.load(cached)
            except (OSError, ValueError):
                pass  # a damaged cache file is recomputed below
        mel = audio.melspectrogram(audio.load_wav(wav_path, self.hp.sample_rate), self.hp).T  # (T, 80)
        mel = np.ascontiguousarray(mel, dtype=np.float32)
        if self.hp.mel_cache_on_disk:
            try:
                with atomic_output(cached, suffix=".npy") as tmp:
                    np.save(tmp, mel)
            except OSError:
                pass  # read-only data: the in-memory cache still holds it
        return mel


class TalkingFaceDataset(torch.utils.data.Dataset):
    """Random training samples of the expert (kind="syncnet") or the generator (kind="wav2lip").

    syncnet: x (15, H/2, W) lower halves of 5 frames, mel (1, 80, 16), y (1,) 1=in sync.
    wav2lip: x (6, T, H, W) masked true window + reference window, indiv_mels (T, 1, 80, 16),
             mel (1, 80, 16), y (3, T, H, W) true window.
    The last item of both is `skips`, an int64 (len(SKIP_REASONS),) count of failed draws.
    """

    def __init__(self, clips, hp, kind, source="dataset"):
        if kind not in ("syncnet", "wav2lip"):
            raise ValueError(f"kind must be 'syncnet' or 'wav2lip', not {kind!r}")
        self.hp, self.kind, self.source = hp, kind, source
        self.frames = scan_clips(clips, source)  # {clip: set of frame ids}
        self.frame_lists = {clip: sorted(ids) for clip, ids in self.frames.items()}
        self.clips = sorted(self.frames)
        self.mels = MelCache(hp)

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, index):
        # As the reference, the index is ignored: every draw is random (workers are seeded by torch).
        skips = np.zeros(len(SKIP_REASONS), np.int64)
        for _ in range(self.hp.max_sample_attempts):
            clip = random.choice(self.clips)
            start, wrong = random.sample(self.frame_lists[clip], 2)
            label = random.choice([True, False]) if self.kind == "syncnet" else True
            sample = self.make_sample(clip, start, wrong, label)
            if isinstance(sample, str):
                skips[SKIP_REASONS.index(sample)] += 1
                continue
            return (*sample, torch.from_numpy(skips))
        counts = ", ".join(f"{n} {reason}" for reason, n in zip(SKIP_REASONS, skips))
        raise DatasetError(f"{self.source}: no usable sample in {self.hp.max_sample_attempts} draws "
                           f"from {len(self.clips)} clips (failed draws: {counts}; window = frame "
                           f"missing, image = unreadable jpg, audio = unreadable wav, mel = audio too short)")

    def make_sample(self, clip, start, wrong, label=True):
        """The sample for true start frame `start` and wrong frame `wrong`, or a SKIP_REASONS entry.

        For the expert, `label` picks the window shown: the true one (True) or the wrong one.
        The mel window is always the true start's.
        """
        from audio import AudioError
        hp, ids = self.hp, self.frames[clip]
        shown = start if label else wrong
        paths = window_paths(clip, shown, ids)
        wrong_paths = window_paths(clip, wrong, ids) if self.kind == "wav2lip" else []
        if paths is None or wrong_paths is None:
            return "window"
        window = read_window(paths, hp.img_size)
        wrong_window = read_window(wrong_paths, hp.img_size)
        if window is None or wrong_window is None:
            return "image"
        try:
            mel = self.mels.get(clip)
        except AudioError:
            return "audio"
        mel_window = crop_mel(mel, start, hp.fps)
        if mel_window.shape[0] != SYNCNET_MEL_STEP_SIZE:
            return "mel"
        mel_window = torch.from_numpy(np.ascontiguousarray(mel_window.T))[None]  # (1, 80, 16)
        if self.kind == "syncnet":
            x = np.concatenate(window, axis=2).astype(np.float32) / 255.  # (H, W, 3*T)
            x = x.transpose(2, 0, 1)[:, hp.img_size // 2:]  # (3*T, H/2, W) lower halves
            y = np.array([1. if label else 0.], np.float32)
            return torch.from_numpy(np.ascontiguousarray(x)), mel_window, torch.from_numpy(y)
        indiv_mels = segmented_mels(mel, start, hp.fps)
        if indiv_mels is None:
            return "mel"
        y = prepare_window(window)
        masked = y.copy()
        masked[:, :, hp.img_size // 2:] = 0.  # hide the mouth: rows H/2.. of every frame
        x = np.concatenate([masked, prepare_window(wrong_window)], axis=0)  # (6, T, H, W)
        indiv_mels = torch.from_numpy(indiv_mels)[:, None]  # (T, 1, 80, 16)
        return torch.from_numpy(x), indiv_mels, mel_window, torch.from_numpy(y)


def prepare_window(window):
    """T BGR uint8 (H, W, 3) frames -> float32 (3, T, H, W) in [0, 1]."""
    x = np.asarray(window, dtype=np.float32) / 255.  # (T, H, W, 3)
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2))
