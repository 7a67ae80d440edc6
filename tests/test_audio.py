"""audio.py against the reference's spectrograms, and its error cases."""
import dataclasses

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


def test_reflect_padding_is_what_the_reference_used(golden):
    # librosa >= 0.10 pads with zeros by default: that changes the edge frames
    # by far more than the tolerance, so matching the golden edges proves reflect.
    import librosa
    hp = hparams
    emphasised = audio.preemphasis(golden["audio_in_wav"], hp.preemphasis)
    spectrum = np.abs(librosa.stft(y=emphasised, n_fft=800, hop_length=200, win_length=800, center=True,
                                   pad_mode="constant"))
    basis = audio._mel_basis(hp.sample_rate, hp.n_fft, hp.num_mels, hp.fmin, hp.fmax)
    zero_padded = audio._normalize(audio._amp_to_db(np.dot(basis, spectrum), hp) - hp.ref_level_db, hp)
    reference = golden["audio_melspectrogram"]
    assert np.abs(zero_padded[:, 0] - reference[:, 0]).max() > 0.05
    np.testing.assert_allclose(zero_padded[:, 5:-5], reference[:, 5:-5], atol=1e-3)
    np.testing.assert_array_equal(audio.melspectrogram(golden["audio_in_wav"])[:, [0, -1]], reference[:, [0, -1]])


@pytest.mark.parametrize("samples", [1, 400, 401, 16000, 2048 * 200 + 77])
def test_blockwise_mel_equals_whole_signal_mel(samples, monkeypatch):
    # melspectrogram works in blocks of STFT frames to bound memory on long audio.
    import librosa
    from scipy import signal
    wav = (np.random.RandomState(samples).randn(samples) * 0.1).astype(np.float32)
    hp = hparams
    with np.testing.suppress_warnings() as sup:
        sup.filter(UserWarning)
        spectrum = np.abs(librosa.stft(y=signal.lfilter([1, -hp.preemphasis], [1], wav), n_fft=800,
                                       hop_length=200, win_length=800, center=True, pad_mode="reflect"))
    basis = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    whole = audio._normalize(audio._amp_to_db(np.dot(basis, spectrum), hp) - hp.ref_level_db, hp)
    np.testing.assert_array_equal(audio.melspectrogram(wav), whole.astype(np.float32))
    monkeypatch.setattr(audio, "MEL_BLOCK_FRAMES", 7)
    np.testing.assert_array_equal(audio.melspectrogram(wav), whole.astype(np.float32))


@pytest.mark.parametrize("samples", [1, 300, 401, 16000, 16123])
def test_numpy_features_equal_librosa_and_scipy_bit_for_bit(samples):
    # audio.py reimplements the three pieces it took from librosa/scipy (importing
    # them costs seconds and 200 MB at inference); they must stay bit-identical.
    import librosa
    from scipy import signal
    x = np.random.RandomState(samples).randn(samples).astype(np.float32)
    emphasised = audio.preemphasis(x, hparams.preemphasis)
    np.testing.assert_array_equal(emphasised, signal.lfilter([1, -hparams.preemphasis], [1], x))
    with np.testing.suppress_warnings() as sup:
        sup.filter(UserWarning)
        expected = librosa.stft(y=emphasised, n_fft=800, hop_length=200, win_length=800, center=True,
                                pad_mode="reflect")
    np.testing.assert_array_equal(audio._stft(x, hparams), expected)
    raw = dataclasses.replace(hparams, preemphasize=False)  # the float32 path
    with np.testing.suppress_warnings() as sup:
        sup.filter(UserWarning)
        expected = librosa.stft(y=x, n_fft=800, hop_length=200, win_length=800, center=True, pad_mode="reflect")
    np.testing.assert_array_equal(audio._stft(x, raw), expected)
    np.testing.assert_array_equal(audio.hann_window(800), signal.get_window("hann", 800, fftbins=True))
    np.testing.assert_array_equal(
        audio._mel_basis(16000, 800, 80, 55, 7600),
        librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600))


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


@pytest.mark.parametrize("rate, channels", [(16000, 1), (16000, 2), (8000, 2), (44100, 1)])
def test_load_wav_equals_librosa_load(tmp_path, rate, channels):
    import librosa
    t = np.arange(rate) / rate
    tone = np.stack([np.sin(2 * np.pi * 440 * t) * (0.5 + 0.1 * c) for c in range(channels)], axis=1)
    path = tmp_path / f"tone {rate}.wav"
    wavfile.write(path, rate, (tone.squeeze() * 16000).astype(np.int16))
    wav = audio.load_wav(str(path), 16000)
    assert wav.ndim == 1 and wav.dtype == np.float32
    assert abs(len(wav) - 16000) <= 1
    assert 0.2 < np.abs(wav).max() < 0.3  # 16000 / 32768 times the channels' mean amplitude
    np.testing.assert_array_equal(wav, librosa.load(str(path), sr=16000, mono=True)[0])


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


@pytest.mark.parametrize("samples", [1, 400, 401, 3399, 16123])
@pytest.mark.parametrize("chunk", [1, 160, 5333, None])
def test_mel_stream_equals_whole_signal_mel(samples, chunk):
    wav = (np.random.RandomState(samples).randn(samples) * 0.1).astype(np.float32)
    chunk = chunk or samples
    stream, parts = audio.MelStream(), []
    for i in range(0, samples, chunk):
        parts.append(stream.push(wav[i:i + chunk]))
    parts.append(stream.finish())
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), audio.melspectrogram(wav))


def test_mel_stream_gives_each_frame_once_its_samples_are_in():
    # Mel frame t reads samples up to t * 200 + 399 (the centred 800-sample window): it must
    # come out with that sample, not later (the real-time latency) and not sooner (exactness).
    wav = (np.random.RandomState(0).randn(4000) * 0.1).astype(np.float32)
    stream, released = audio.MelStream(), []
    for n in range(len(wav)):
        if stream.push(wav[n:n + 1]).shape[1]:
            released.append(n + 1)  # samples in when a frame came out
    assert released[:5] == [401, 600, 800, 1000, 1200]  # frame 0 needs 400 + 1 (np.pad's reflection)
    assert stream.frames == (len(wav) - 400) // 200 + 1 == 19
    assert stream.finish().shape[1] == 1 + len(wav) // 200 - 19  # the two frames the end reflects into


def test_mel_stream_rejects_nan_and_empty():
    with pytest.raises(audio.AudioError, match="NaN"):
        audio.MelStream().push(np.array([0.1, np.nan], np.float32))
    with pytest.raises(audio.AudioError, match="non-empty"):
        audio.MelStream().finish()
