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
    """Mono float32 audio of `path` at `sr` Hz, as librosa.load(path, sr=sr) gives it.

    soundfile reads it (librosa's first choice); librosa is imported only to
    resample, or to fall back to audioread for files soundfile cannot read:
    importing it costs seconds and 200 MB.
    """
    import warnings

    import soundfile
    try:
        with soundfile.SoundFile(path) as f:
            native_sr = f.samplerate
            wav = f.read(dtype="float32", always_2d=False).T
    except (soundfile.SoundFileError, RuntimeError, OSError, TypeError):
        native_sr, wav = None, None
    try:
        with warnings.catch_warnings():  # librosa warns before falling back to audioread
            warnings.simplefilter("ignore")
            if wav is None:
                import librosa
                wav, native_sr = librosa.load(path, sr=None, mono=False)
            if wav.ndim > 1:  # librosa.to_mono
                wav = np.mean(wav, axis=tuple(range(wav.ndim - 1)))
            if native_sr != sr:
                import librosa
                wav = librosa.resample(wav, orig_sr=native_sr, target_sr=sr)  # librosa.load's soxr_hq
    except Exception as e:  # librosa and audioread raise many kinds for unreadable files
        raise AudioError(f"{path}: cannot read audio ({type(e).__name__}: {e})") from None
    return wav.astype(np.float32)


def save_wav(wav, path, sr):
    """Write int16 PCM, scaled so the peak reaches full scale (as the reference)."""
    from scipy.io import wavfile
    wav = np.asarray(wav, dtype=np.float64)
    scaled = wav * (32767 / max(0.01, float(np.max(np.abs(wav))) if wav.size else 0.01))
    wavfile.write(path, sr, scaled.astype(np.int16))


def preemphasis(wav, k, preemphasize=True):
    """y[n] = x[n] - k x[n-1] in float64: scipy.signal.lfilter([1, -k], [1], wav), bit for bit."""
    if not preemphasize:
        return wav
    x = np.asarray(wav, dtype=np.float64)
    y = x.copy()
    y[1:] = x[1:] - k * x[:-1]
    return y


def inv_preemphasis(wav, k, inv_preemphasize=True):
    from scipy import signal
    if inv_preemphasize:
        return signal.lfilter([1], [1, -k], wav)
    return wav


@lru_cache(maxsize=4)
def hann_window(length):
    """Periodic Hann window, float64, computed as scipy.signal.get_window("hann", length)."""
    fac = np.linspace(-np.pi, np.pi, length + 1, dtype=np.float64)
    window = np.zeros(length + 1, dtype=np.float64)
    for k, a in enumerate((0.5, 0.5)):
        window += a * np.cos(k * fac)
    return window[:-1]


def _stft(wav, hp, first=0, end=None, base=0, length=None):
    """STFT frames [first, end) of the pre-emphasised signal, centred with reflect padding:
    (1 + n_fft // 2, end - first) complex, equal bit for bit to
    librosa.stft(preemphasis(wav), ..., center=True, pad_mode="reflect")[:, first:end].

    `wav` may hold only samples [base, base + len(wav)) of a signal of `length` samples
    (default: all of it), as long as it holds every sample those frames read (MelStream).
    librosa >= 0.10 pads with zeros by default; the published models saw reflect padding.
    """
    if hp.win_size != hp.n_fft:
        raise ValueError(f"win_size ({hp.win_size}) must equal n_fft ({hp.n_fft})")
    length = base + len(wav) if length is None else length
    end = 1 + length // hp.hop_size if end is None else end
    samples = _emphasised_padded(wav, hp, first * hp.hop_size, (end - 1) * hp.hop_size + hp.n_fft, base, length)
    frames = np.lib.stride_tricks.sliding_window_view(samples, hp.n_fft)[::hp.hop_size]
    spectrum = np.fft.rfft(frames * hann_window(hp.n_fft), axis=-1).T
    # librosa keeps the input's precision: complex64 for float32 (preemphasize=False)
    return spectrum.astype(np.result_type(samples.dtype, np.complex64), copy=False)


# Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = (_MIN_LOG_HZ - 0.0) / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(frequencies):
    """Hz -> Slaney mels, with librosa's arithmetic."""
    frequencies = np.asanyarray(frequencies, dtype=np.float64)
    mels = (frequencies - 0.0) / _F_SP
    if mels.ndim == 0:
        return _MIN_LOG_MEL + np.log(frequencies / _MIN_LOG_HZ) / _LOGSTEP if frequencies >= _MIN_LOG_HZ else mels
    log_t = frequencies >= _MIN_LOG_HZ
    mels[log_t] = _MIN_LOG_MEL + np.log(frequencies[log_t] / _MIN_LOG_HZ) / _LOGSTEP
    return mels


def mel_to_hz(mels):
    """Slaney mels -> Hz, with librosa's arithmetic."""
    mels = np.asanyarray(mels, dtype=np.float64)
    freqs = 0.0 + _F_SP * mels
    log_t = mels >= _MIN_LOG_MEL
    freqs[log_t] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels[log_t] - _MIN_LOG_MEL))
    return freqs


@lru_cache(maxsize=4)
def _mel_basis(sample_rate, n_fft, num_mels, fmin, fmax):
    """(num_mels, 1 + n_fft // 2) float32 Slaney-normalised triangles: librosa.filters.mel
    (htk=False, norm="slaney"), bit for bit."""
    assert fmax <= sample_rate // 2
    weights = np.zeros((num_mels, 1 + n_fft // 2), dtype=np.float32)
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), num_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    for i in range(num_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:num_mels + 2] - mel_f[:num_mels]))[:, np.newaxis]
    return weights


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


def _checked(wav):
    wav = np.asarray(wav)
    if wav.ndim != 1 or wav.size == 0:
        raise AudioError(f"audio must be a non-empty 1-D waveform, got shape {wav.shape}")
    if not np.all(np.isfinite(wav)):
        raise AudioError("audio contains NaN or infinite samples")
    return wav


def _emphasised_padded(wav, hp, start, stop, base=0, length=None):
    """Samples [start, stop) of the pre-emphasised signal reflect-padded by n_fft // 2, computed
    from the samples they come from only, with preemphasis's and np.pad's arithmetic.

    `wav` holds samples [base, base + len(wav)) of a signal of `length` samples (see _stft).
    """
    pad = hp.n_fft // 2
    n = base + len(wav) if length is None else length
    if n <= pad:  # np.pad reflects a short signal several times over: let it (whole signal only)
        return np.pad(preemphasis(wav, hp.preemphasis, hp.preemphasize), pad, mode="reflect")[start:stop]
    j = np.abs(np.arange(start, stop) - pad)  # reflected at the start...
    j = np.where(j > n - 1, 2 * (n - 1) - j, j)  # ...and at the end
    if not hp.preemphasize:
        return wav[j - base]
    y = wav[j - base].astype(np.float64) - hp.preemphasis * wav[np.maximum(j - 1, 0) - base].astype(np.float64)
    if base == 0:  # (sample 0 has no predecessor; a buffer from base > 0 no longer reads it)
        y[j == 0] = wav[0]
    return y


def _finish(S, hp, what):
    S = _normalize(S, hp) if hp.signal_normalization else S
    if np.isnan(S).any():
        raise AudioError(f"{what} contains NaN; if this is a TTS voice, "
                         "add a small epsilon noise to the wav file and try again")
    return S.astype(np.float32)


def linearspectrogram(wav, hp=default_hparams):
    """(n_fft // 2 + 1, 1 + len(wav) // hop_size) normalised log-magnitude spectrogram."""
    S = _amp_to_db(np.abs(_stft(_checked(wav), hp)), hp) - hp.ref_level_db
    return _finish(S, hp, "linear spectrogram")


MEL_BLOCK_FRAMES = 2048  # STFT frames (25.6 s) per block: the transient memory of melspectrogram


def _mel_frames(wav, hp, first, end, base=0, length=None):
    """Normalised log-mel frames [first, end), from samples as _stft takes them."""
    basis = _mel_basis(hp.sample_rate, hp.n_fft, hp.num_mels, hp.fmin, hp.fmax)
    S = _amp_to_db(np.dot(basis, np.abs(_stft(wav, hp, first, end, base, length))), hp) - hp.ref_level_db
    return _finish(S, hp, "mel spectrogram")


def melspectrogram(wav, hp=default_hparams):
    """(num_mels, 1 + len(wav) // hop_size) normalised log-mel spectrogram.

    Computed in blocks of STFT frames, so an hour of audio needs no gigabytes
    of complex spectrum; every value equals the whole-signal computation.
    """
    wav = _checked(wav)
    n_frames = 1 + len(wav) // hp.hop_size
    mel = np.empty((hp.num_mels, n_frames), dtype=np.float32)
    for first in range(0, n_frames, MEL_BLOCK_FRAMES):
        end = min(first + MEL_BLOCK_FRAMES, n_frames)
        mel[:, first:end] = _mel_frames(wav, hp, first, end)
    return mel


class MelStream:
    """melspectrogram of a signal that arrives in pieces, frame for frame equal to the whole
    signal's, each frame as soon as the samples it reads have arrived.

        mels = MelStream()
        for chunk in chunks:                 # float32 samples at hp.sample_rate, any sizes
            new = mels.push(chunk)           # (num_mels, k): the frames now final
        new = mels.finish()                  # the last frames (the end's reflect padding)

    Mel frame t is centred on sample t * hop_size and reads n_fft // 2 samples either
    side (and one more for preemphasis), so it is final once sample t * hop + n_fft // 2 - 1
    has arrived: 400 samples (25 ms) of lookahead at 16 kHz. The last frames reflect the
    signal at its end, known only at finish(). Memory holds one window of samples.
    """

    def __init__(self, hp=default_hparams):
        self.hp = hp
        self.samples = 0  # samples pushed
        self.frames = 0  # mel frames returned
        self._buffer = np.zeros(0, np.float32)  # samples [self._base, self.samples)
        self._base = 0
        self._finished = False

    def push(self, wav):
        if self._finished:
            raise ValueError("MelStream.push after finish()")
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(wav)):
            raise AudioError("audio contains NaN or infinite samples")
        self._buffer = np.concatenate((self._buffer, wav))
        self.samples += len(wav)
        pad = self.hp.n_fft // 2
        final = (self.samples - pad) // self.hp.hop_size + 1 if self.samples > pad else 0
        return self._emit(final, length=None)

    def finish(self):
        """The remaining frames; AudioError if nothing was pushed."""
        if self.samples == 0:
            raise AudioError("audio must be a non-empty 1-D waveform, got shape (0,)")
        self._finished = True
        return self._emit(1 + self.samples // self.hp.hop_size, length=self.samples)

    def _emit(self, end, length):
        if end <= self.frames:
            return np.zeros((self.hp.num_mels, 0), np.float32)
        mel = _mel_frames(self._buffer, self.hp, self.frames, end, self._base, length)
        self.frames = end
        # Keep what the next frame reads: from n_fft // 2 + 1 samples before its centre.
        keep = max(0, self.frames * self.hp.hop_size - self.hp.n_fft // 2 - 1)
        if keep > self._base:
            self._buffer = self._buffer[keep - self._base:]
            self._base = keep
        return mel
