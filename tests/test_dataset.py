"""Dataset windows, mel offsets (SPEC section 8), the mel cache, unusable-data errors, synthetic data."""
import os
import random
import re

import cv2
import numpy as np
import pytest

import audio
import dataset
from dataset import DatasetError, TalkingFaceDataset, crop_mel, mel_start, segmented_mels, window_paths
from hparams import hparams

HP = hparams.replace(max_sample_attempts=20)
N_FRAMES = 24


def write_clip(folder, n_frames=N_FRAMES, seconds=1.2, size=96):
    """Frame i is a flat image of value 10 * i (blue channel), so windows can be identified."""
    os.makedirs(folder, exist_ok=True)
    for i in range(n_frames):
        img = np.zeros((size, size, 3), np.uint8)
        img[..., 0] = 10 * i
        img[size // 2:, :, 1] = 200  # lower half differs from the upper half
        cv2.imwrite(os.path.join(folder, f"{i}.jpg"), img)
    rng = np.random.RandomState(0)
    audio.save_wav(rng.uniform(-0.5, 0.5, int(seconds * 16000)), os.path.join(folder, "audio.wav"), 16000)
    return folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(str(tmp_path_factory.mktemp("data") / "g" / "c0"))


def test_mel_offsets_hand_computed():
    # 80 mel frames per second, 25 fps: frame f starts at int(3.2 f).
    assert [mel_start(f, 25) for f in (0, 1, 2, 3, 7, 10)] == [0, 3, 6, 9, 22, 32]
    mel = np.arange(100)[:, None] * np.ones((1, 80))  # (T, 80), row t holds t
    assert crop_mel(mel, 7, 25)[:, 0].tolist() == list(range(22, 38))
    assert crop_mel(mel, 30, 25).shape == (4, 80)  # runs past the end: 96..99
    # Generator mels for start 7: frame numbers 8..12, each cropped at (number - 2) = 6..10.
    seg = segmented_mels(mel, 7, 25)
    assert seg.shape == (5, 80, 16)
    assert [int(s[0, 0]) for s in seg] == [19, 22, 25, 28, 32]
    assert segmented_mels(mel, 0, 25) is None  # start + 1 - 2 < 0
    assert [int(s[0, 0]) for s in segmented_mels(mel, 1, 25)] == [0, 3, 6, 9, 12]
    assert segmented_mels(mel, 26, 25) is None  # last crop at frame 30 is short


def test_window_paths():
    ids = set(range(10)) - {7}
    assert window_paths("c", 1, ids) == [os.path.join("c", f"{i}.jpg") for i in range(1, 6)]
    assert window_paths("c", 3, ids) is None  # frame 7 missing
    assert window_paths("c", 8, ids) is None  # past the end


def test_syncnet_sample_hand_indices(clip):
    data = TalkingFaceDataset([clip], HP, "syncnet")
    mel = audio.melspectrogram(audio.load_wav(os.path.join(clip, "audio.wav"), 16000)).T
    for label, shown in ((True, 4), (False, 11)):
        x, m, y = data.make_sample(clip, 4, 11, label)
        assert x.shape == (15, 48, 96) and m.shape == (1, 80, 16) and y.tolist() == [float(label)]
        # channels = 5 frames x BGR; blue of frame k is 10 * (shown + k); lower half (green 200) only
        # (rows 10.. of the lower half: away from the jpeg's blur at the boundary)
        assert np.allclose(x[0::3, 20, 48].numpy() * 255, [10 * (shown + k) for k in range(5)], atol=3)
        assert np.allclose(x[1::3, 10:].numpy() * 255, 200, atol=3)
        np.testing.assert_allclose(m[0].numpy(), mel[12:28].T)  # true start 4 -> int(12.8) = 12


def test_wav2lip_sample_hand_indices(clip):
    data = TalkingFaceDataset([clip], HP, "wav2lip")
    mel = audio.melspectrogram(audio.load_wav(os.path.join(clip, "audio.wav"), 16000)).T
    x, indiv, m, y = data.make_sample(clip, 5, 12)
    assert x.shape == (6, 5, 96, 96) and indiv.shape == (5, 1, 80, 16) and y.shape == (3, 5, 96, 96)
    assert np.allclose(y[0, :, 10, 10].numpy() * 255, [50, 60, 70, 80, 90], atol=3)
    assert float(x[:3, :, 48:].abs().max()) == 0  # mouth half masked
    assert np.allclose(x[:3, :, :48].numpy(), y[:, :, :48].numpy())
    assert np.allclose(x[3, :, 10, 10].numpy() * 255, [120, 130, 140, 150, 160], atol=3)  # reference window
    np.testing.assert_allclose(m[0].numpy(), mel[16:32].T)  # int(3.2 * 5) = 16
    for k, start in enumerate([12, 16, 19, 22, 25]):  # frames 4..8 -> int(3.2 f)
        np.testing.assert_allclose(indiv[k, 0].numpy(), mel[start:start + 16].T)


def test_random_samples_and_skip_counts(clip):
    random.seed(0)
    data = TalkingFaceDataset([clip], HP, "wav2lip")
    skips = sum(data[0][-1] for _ in range(30))
    assert skips.shape == (4,)
    assert skips[0] > 0  # windows starting in the last 4 frames are drawn and counted
    assert skips[1] == skips[2] == 0


def test_mel_computed_once(clip, monkeypatch):
    calls = []
    real = audio.melspectrogram
    monkeypatch.setattr(audio, "melspectrogram", lambda *a, **k: calls.append(1) or real(*a, **k))
    for f in os.listdir(clip):
        if f.startswith("mel_"):
            os.remove(os.path.join(clip, f))
    data = TalkingFaceDataset([clip], HP, "syncnet")
    for _ in range(10):
        data[0]
    assert len(calls) == 1
    cached = [f for f in os.listdir(clip) if f.startswith("mel_") and f.endswith(".npy")]
    assert len(cached) == 1
    fresh = TalkingFaceDataset([clip], HP, "syncnet")  # a new process / run reads the file
    fresh[0]
    assert len(calls) == 1


def test_too_few_frames_is_an_error(tmp_path):
    clips = [write_clip(str(tmp_path / "g" / f"c{i}"), n_frames=15) for i in range(2)]
    with pytest.raises(DatasetError, match=r"none of the 3 clips is usable \(1 missing folders, "
                                           r"0 without audio.wav, 2 with fewer than 16 frames\)"):
        TalkingFaceDataset(clips + [str(tmp_path / "nope")], HP, "syncnet", source="train.txt")


@pytest.mark.parametrize("damage", ["jpg", "audio"])
def test_unusable_clip_errors_after_bounded_attempts(tmp_path, damage):
    folder = write_clip(str(tmp_path / "g" / "c"), n_frames=20)
    if damage == "jpg":
        for i in range(20):
            with open(os.path.join(folder, f"{i}.jpg"), "wb") as f:
                f.write(b"not a jpeg")
    else:
        audio.save_wav(np.zeros(1600) + 0.1, os.path.join(folder, "audio.wav"), 16000)  # 0.1 s
    data = TalkingFaceDataset([folder], HP.replace(max_sample_attempts=20), "syncnet", source="train.txt")
    with pytest.raises(DatasetError, match="train.txt: no usable sample in 20 draws from 1 clips") as e:
        data[0]
    counts = dict(zip(dataset.SKIP_REASONS, map(int, re.findall(r"(\d+) (?:window|image|audio|mel)\b",
                                                                str(e.value)))))
    assert sum(counts.values()) == 20
    assert counts["image" if damage == "jpg" else "mel"] > 10  # the rest hit the clip's end

def test_missing_filelist(tmp_path):
    with pytest.raises(DatasetError, match="train.txt: filelist not found"):
        dataset.load_split(str(tmp_path), "train", str(tmp_path / "filelists"))


def test_synthetic_mouth_follows_loudness():
    from synthetic import mouth_openings, talking_face_clip
    wav, frames = talking_face_clip(2.0, size=96, seed=3)
    assert len(frames) == 50 and frames[0].shape == (96, 96, 3) and frames[0].dtype == np.uint8
    opening = mouth_openings(wav, 16000, 25, 50)
    assert opening.min() >= 0 and opening.max() == 1
    # the mouth is dark red: count its pixels in the lower half
    mouth_pixels = [int(((f[48:, :, 2] > 110) & (f[48:, :, 1] < 80)).sum()) for f in frames]
    assert np.corrcoef(opening, mouth_pixels)[0, 1] > 0.9
