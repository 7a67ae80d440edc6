"""audio.py against the reference's spectrograms, and its error cases."""
import numpy as np
import pytest
from scipy.io import wavfile

import audio
from hparams import MEL_FRAMES_PER_SECOND, hparams


def test_melspectrogram_matches_reference(golden):
    mel = audio.melspectrogram(golden["audio_in_wav"])
    assert mel.shape == (80, 161) == golden["audio_melspectrogram"].shape
    np.testing.assert_allclose(mel, golden["audio_melspectrogram"], atol=1e-3, rtol=0)


def test_linearspectrogram_matches_reference(golden):
    spec = audio.linearspectrogram(golden["audio_in_wav"])
    assert spec.shape == (401, 161)
    np.testing.assert_allclose(spec, golden["audio_linearspectrogram"], atol=1e-3, rtol=0)


def test_mel_frame_rate_and_range():
    assert MEL_FRAMES_PER_SECOND == hparams.sample_rate // hparams.hop_size == 80
    wav = np.random.RandomState(0).uniform(-0.5, 0.5, 16000 * 3).astype(np.float32)
    mel = audio.melspectrogram(wav)
    assert mel.shape == (80, 1 + len(wav) // 200) == (80, 241)
    assert mel.dtype == np.float32
    assert mel.min() >= -4 and mel.max() <= 4


def test_reflect_padding_is_what_the_reference_used(golden, monkeypatch):
    # librosa >= 0.10 pads with zeros by default: that changes the edge frames
    # by far more than the tolerance, so matching the golden edges proves reflect.
    import librosa
    real_stft = librosa.stft
    monkeypatch.setattr(librosa, "stft", lambda *a, **k: real_stft(*a, **{**k, "pad_mode": "constant"}))
    zero_padded = audio.melspectrogram(golden["audio_in_wav"])
    reference = golden["audio_melspectrogram"]
    assert np.abs(zero_padded[:, 0] - reference[:, 0]).max() > 0.05
    np.testing.assert_allclose(zero_padded[:, 5:-5], reference[:, 5:-5], atol=1e-3)


def test_silence_gives_floor_not_nan():
    mel = audio.melspectrogram(np.zeros(16000, np.float32))
    assert np.all(mel == -4)


@pytest.mark.parametrize("wav, message", [
    (np.zeros(0, np.float32), "non-empty"),
    (np.array([0.1, np.nan, 0.2] * 400, np.float32), "NaN"),
    (np.zeros((2, 100), np.float32), "1-D"),
])
def test_bad_waveforms_raise_clear_errors(wav, message):
    with pytest.raises(audio.AudioError, match=message):
        audio.melspectrogram(wav)


def test_load_wav_resamples_to_mono(tmp_path):
    t = np.arange(8000) / 8000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1)
    path = tmp_path / "tone 8k.wav"
    wavfile.write(path, 8000, (stereo * 16000).astype(np.int16))
    wav = audio.load_wav(str(path), 16000)
    assert wav.ndim == 1 and wav.dtype == np.float32
    assert abs(len(wav) - 16000) <= 1
    assert 0.4 < np.abs(wav).max() < 0.6


def test_load_wav_unreadable_file(tmp_path):
    path = tmp_path / "not_audio.wav"
    path.write_bytes(b"this is not audio at all")
    with pytest.raises(audio.AudioError, match="not_audio.wav"):
        audio.load_wav(str(path), 16000)


def test_save_wav_scales_peak_to_int16(tmp_path):
    wav = np.array([0.0, 0.25, -0.5, 0.1], np.float32)
    path = tmp_path / "out.wav"
    audio.save_wav(wav, str(path), 16000)
    sr, data = wavfile.read(path)
    assert sr == 16000 and data.dtype == np.int16
    assert data.tolist() == [0, 16383, -32767, 6553]
    np.testing.assert_array_equal(wav, np.array([0.0, 0.25, -0.5, 0.1], np.float32))  # untouched
