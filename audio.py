"""Audio features of Wav2Lip: 80-band log-mel spectrogram at 80 frames per second.

    import audio
    wav = audio.load_wav("speech.wav", 16000)
    mel = audio.melspectrogram(wav)   # (80, 1 + len(wav) // 200)

Faithful to the published code on librosa 0.7: preemphasis, reflect-padded
centred STFT, Slaney mel filters, dB with a -100 dB floor, symmetric
normalisation to [-4, 4]. Every function takes its settings explicitly
(`hp`, default: hparams.hparams).
"""
from functools import lru_cache

import numpy as np

from hparams import hparams as default_hparams


class AudioError(ValueError):
    """Audio that cannot give a spectrogram (empty, NaN, unreadable)."""


def load_wav(path, sr):
    """Mono float32 audio of `path` resampled to `sr` Hz."""
    import warnings

    import librosa
    try:
        with warnings.catch_warnings():  # librosa warns before falling back to audioread
            warnings.simplefilter("ignore")
            wav, _ = librosa.load(path, sr=sr, mono=True)
    except Exception as e:  # librosa raises many kinds for unreadable files
        raise AudioError(f"{path}: cannot read audio ({type(e).__name__}: {e})") from None
    return wav.astype(np.float32)


def save_wav(wav, path, sr):
    """Write int16 PCM, scaled so the peak reaches full scale (as the reference)."""
    from scipy.io import wavfile
    wav = np.asarray(wav, dtype=np.float64)
    scaled = wav * (32767 / max(0.01, float(np.max(np.abs(wav))) if wav.size else 0.01))
    wavfile.write(path, sr, scaled.astype(np.int16))


def preemphasis(wav, k, preemphasize=True):
    from scipy import signal
    if preemphasize:
        return signal.lfilter([1, -k], [1], wav)
    return wav


def inv_preemphasis(wav, k, inv_preemphasize=True):
    from scipy import signal
    if inv_preemphasize:
        return signal.lfilter([1], [1, -k], wav)
    return wav


def _stft(y, hp):
    import librosa
    # librosa >= 0.10 pads with zeros by default; the published models saw reflect padding.
    return librosa.stft(y=y, n_fft=hp.n_fft, hop_length=hp.hop_size, win_length=hp.win_size,
                        center=True, pad_mode="reflect")


@lru_cache(maxsize=4)
def _mel_basis(sample_rate, n_fft, num_mels, fmin, fmax):
    import librosa
    assert fmax <= sample_rate // 2
    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=num_mels, fmin=fmin, fmax=fmax)


def _amp_to_db(x, hp):
    min_level = np.exp(hp.min_level_db / 20 * np.log(10))  # 1e-5 for -100 dB
    return 20 * np.log10(np.maximum(min_level, x))


def _normalize(S, hp):
    m, floor = hp.max_abs_value, hp.min_level_db
    if hp.symmetric_mels:
        S = (2 * m) * ((S - floor) / (-floor)) - m
        return np.clip(S, -m, m) if hp.allow_clipping_in_normalization else S
    S = m * ((S - floor) / (-floor))
    return np.clip(S, 0, m) if hp.allow_clipping_in_normalization else S


def _spectrum(wav, hp):
    wav = np.asarray(wav)
    if wav.ndim != 1 or wav.size == 0:
        raise AudioError(f"audio must be a non-empty 1-D waveform, got shape {wav.shape}")
    if not np.all(np.isfinite(wav)):
        raise AudioError("audio contains NaN or infinite samples")
    return np.abs(_stft(preemphasis(wav, hp.preemphasis, hp.preemphasize), hp))


def _finish(S, hp, what):
    S = _normalize(S, hp) if hp.signal_normalization else S
    if np.isnan(S).any():
        raise AudioError(f"{what} contains NaN; if this is a TTS voice, "
                         "add a small epsilon noise to the wav file and try again")
    return S.astype(np.float32)


def linearspectrogram(wav, hp=default_hparams):
    """(n_fft // 2 + 1, 1 + len(wav) // hop_size) normalised log-magnitude spectrogram."""
    S = _amp_to_db(_spectrum(wav, hp), hp) - hp.ref_level_db
    return _finish(S, hp, "linear spectrogram")


def melspectrogram(wav, hp=default_hparams):
    """(num_mels, 1 + len(wav) // hop_size) normalised log-mel spectrogram."""
    basis = _mel_basis(hp.sample_rate, hp.n_fft, hp.num_mels, hp.fmin, hp.fmax)
    S = _amp_to_db(np.dot(basis, _spectrum(wav, hp)), hp) - hp.ref_level_db
    return _finish(S, hp, "mel spectrogram")
