"""Live lip sync: speech arrives in pieces, a prepared avatar's frames come out as soon as they can.

    engine = Engine(Avatar("avatars/anna"), runner)     # runner: inference.build_runner(...)
    stream = engine.stream()                            # one utterance, exact
    for chunk in pcm_chunks:                            # float32 or int16 mono, any sizes
        for frame in stream.push(chunk):                # Frame(index, timestamp, image)
            show(frame.image)
    for frame in stream.finish():                       # the last frames, as inference.py ends a clip
        show(frame.image)

    session = engine.session()                          # a live timeline of utterances and idle frames
    session.push(chunk) / session.end_utterance() / session.idle_frame()   # -> LiveFrame(s)

Output frame i needs the 16 mel frames of its window, starting at int(i * 80 / fps)
(lipsync.mel_chunk_starts); audio.MelStream gives each mel frame, equal to the whole
signal's, once 400 samples past its centre have arrived. So frame i leaves as soon as
the sample (start_i + 15) * 200 + 399 is in: at 25 fps, 212.5 ms of audio after the
frame's own time (the window's lookahead), plus the compute. In fp32 the frames are
inference.py's frames for the same avatar, audio and checkpoint, whatever the chunk
sizes (a frame computed alone may differ from a batch's in the last bits: at most one
grey level).
"""
import threading
from collections import namedtuple

import numpy as np

from hparams import MEL_FRAMES_PER_SECOND, SYNCNET_MEL_STEP_SIZE, hparams

Frame = namedtuple("Frame", "index timestamp image")
# index: on the session's timeline; audio: the float32 samples of the frame's time slot;
# synced: lip-synced (False: the avatar's own frame, over silence or past an utterance's end).
LiveFrame = namedtuple("LiveFrame", "index timestamp image audio synced")

SAMPLE_RATE = hparams.sample_rate


def lookahead_seconds(fps):
    """The most audio that must arrive after a frame's own time before it can be made: its
    mel window's span plus the STFT's right half-window (212.5 ms). Frame 0's window starts
    on its own time; later windows start up to one mel frame earlier (int() rounds down),
    so they wait a little less. The same at any fps."""
    return ((SYNCNET_MEL_STEP_SIZE - 1) * hparams.hop_size + hparams.n_fft // 2) / hparams.sample_rate


def as_float_pcm(chunk):
    """float32 samples in [-1, 1) from float32/float64 or int16 PCM (int16 / 32768, as soundfile reads WAVs)."""
    chunk = np.asarray(chunk)
    if chunk.dtype == np.int16:
        return chunk.astype(np.float32) / np.float32(32768)
    if chunk.dtype.kind != "f":
        raise TypeError(f"PCM must be float32 or int16, got {chunk.dtype}")
    return chunk.astype(np.float32, copy=False).reshape(-1)


class Resampler:
    """Streaming resampling to 16 kHz (soxr, the library librosa resamples with); a no-op at 16 kHz."""

    def __init__(self, rate, target=SAMPLE_RATE):
        self.rate, self.target = int(rate), int(target)
        if self.rate <= 0:
            raise ValueError(f"sample rate must be positive, got {rate}")
        self._stream = None
        if self.rate != self.target:
            import soxr
            self._stream = soxr.ResampleStream(self.rate, self.target, 1, dtype="float32", quality="HQ")

    def __call__(self, samples, last=False):
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples, last=last)


class Engine:
    """An avatar and a generator runner, shared by the streams and sessions made from it.

    The runner (lipsync.GeneratorRunner) keeps the face encoder's outputs of every
    avatar frame it has met, under the frame's index, so each face is encoded once for
    all streams; a lock lets sessions in several threads take turns on it.
    """

    def __init__(self, avatar, runner):
        if runner.img_size != avatar.img_size:
            from cli import UserError
            raise UserError(f"{avatar.folder}: avatar of {avatar.img_size}x{avatar.img_size} faces, but the "
                            f"generator makes {runner.img_size}x{runner.img_size} faces: prepare the avatar "
                            f"with --img_size {runner.img_size}")
        self.avatar, self.runner = avatar, runner
        self.lock = threading.Lock()
        from blending import blend_face
        from lipsync import paste_face
        self._paste = blend_face if avatar.blend else paste_face

    def warm_up(self, progress=False):
        """Encode every avatar face once now, so that no live frame waits for the face encoder."""
        from tqdm import tqdm
        from lipsync import masked_input
        avatar = self.avatar
        keys = [k for k in range(avatar.frame_count) if avatar.coords(k) is not None]
        with self.lock, tqdm(total=len(keys), desc="encode avatar faces", unit="face", disable=not progress) as bar:
            for first in range(0, len(keys), 32):
                part = keys[first:first + 32]
                self.runner.store_features([masked_input(np.asarray(avatar.face(k))) for k in part], part)
                bar.update(len(part))

    def stream(self, first_frame=0, sample_rate=SAMPLE_RATE):
        return LipSyncStream(self, first_frame, sample_rate)

    def session(self, sample_rate=SAMPLE_RATE):
        return LiveSession(self, sample_rate)

    def render(self, indices, mels):
        """Output frames for avatar timeline positions `indices` with their (B, 80, 16) mel windows."""
        from lipsync import masked_input
        avatar = self.avatar
        stored = [avatar.frame_index(i) for i in indices]
        with_face = [(j, k) for j, k in enumerate(stored) if avatar.coords(k) is not None]
        images = [np.array(avatar.frame(k)) for k in stored]
        if with_face:
            faces = [masked_input(np.asarray(avatar.face(k))) for _, k in with_face]
            with self.lock:
                generated = self.runner(mels[[j for j, _ in with_face]], faces, [k for _, k in with_face])
            for (j, k), face in zip(with_face, generated):
                self._paste(images[j], face, avatar.coords(k))
        return images


class LipSyncStream:
    """One utterance: PCM in, frames out, equal to inference.py's for the same audio file.

    first_frame: the avatar loop position of frame 0 (0 for inference.py's frames).
    Frame timestamps are seconds from the utterance's first sample.
    """

    def __init__(self, engine, first_frame=0, sample_rate=SAMPLE_RATE):
        from audio import MelStream
        self.engine, self.first_frame = engine, int(first_frame)
        self.fps = engine.avatar.fps
        self._step = MEL_FRAMES_PER_SECOND / self.fps  # mel frames per output frame, as mel_chunk_starts
        self._mel = MelStream()
        self._resample = Resampler(sample_rate)
        self._window = np.zeros((hparams.num_mels, 0), np.float32)  # mel frames [self._window_start, ...)
        self._window_start = 0
        self.frames_out = 0
        self.finished = False

    @property
    def samples(self):
        """16 kHz samples received so far."""
        return self._mel.samples

    def _start(self, i):
        return int(i * self._step)

    def push(self, pcm):
        """Take a chunk of mono PCM; return the frames whose windows it completed."""
        if self.finished:
            raise ValueError("push after finish()")
        self._add(self._mel.push(self._resample(as_float_pcm(pcm))))
        ready = []
        i = self.frames_out
        while self._start(i) + SYNCNET_MEL_STEP_SIZE <= self._mel.frames:
            ready.append((i, self._start(i)))
            i += 1
        return self._render(ready)

    def finish(self):
        """The remaining frames: windows up to the end, then one on the last 16 mel frames, as
        inference.py ends a clip. [] for an utterance shorter than one window (0.2 s)."""
        if self.finished:
            return []
        self.finished = True
        tail = self._resample(np.zeros(0, np.float32), last=True)  # what the resampler still holds
        if len(tail):
            self._add(self._mel.push(tail))
        if self._mel.samples == 0:
            return []
        self._add(self._mel.finish())
        total = self._mel.frames
        if total < SYNCNET_MEL_STEP_SIZE:
            return []
        ready, i = [], self.frames_out
        while self._start(i) + SYNCNET_MEL_STEP_SIZE <= total:
            ready.append((i, self._start(i)))
            i += 1
        ready.append((i, total - SYNCNET_MEL_STEP_SIZE))
        return self._render(ready)

    def _add(self, mel):
        if mel.shape[1]:
            self._window = np.concatenate((self._window, mel), axis=1)

    def _render(self, ready):
        if not ready:
            return []
        window = SYNCNET_MEL_STEP_SIZE
        mels = np.stack([self._window[:, s - self._window_start:s - self._window_start + window]
                         for _, s in ready])
        images = self.engine.render([self.first_frame + i for i, _ in ready], mels)
        self.frames_out = ready[-1][0] + 1
        # Drop the mel frames no later window reads: windows start in order, and the final one
        # (on the last 16 mel frames) starts at or after the last frame given out.
        keep_from = min(self._start(self.frames_out - 1), self._mel.frames)
        if keep_from > self._window_start:
            self._window = self._window[:, keep_from - self._window_start:]
            self._window_start = keep_from
        return [Frame(i, i / self.fps, image) for (i, _), image in zip(ready, images)]


class LiveSession:
    """A live timeline: utterances lip-synced as their audio arrives, the avatar's own frames
    between them, and every frame with the audio of its time slot, so that a live output
    keeps its frame rate and its sound in step whether or not speech is arriving.

    Frame g of the timeline shows avatar frame avatar.frame_index(g) at g / fps seconds, with
    the samples [round(g * 16000 / fps), round((g + 1) * 16000 / fps)) of the timeline's audio.
    An utterance starts at the next free frame (so the first, started at frame 0, gives
    inference.py's frames); end_utterance() flushes it (LipSyncStream.finish) and fills its
    audio's remaining time with the avatar's own frames; idle_until(t) adds own frames, over
    silence, up to timeline time t (a caller's clock: speech has stopped arriving).
    """

    def __init__(self, engine, sample_rate=SAMPLE_RATE):
        self.engine = engine
        self.fps = engine.avatar.fps
        self.next_index = 0  # the next frame of the timeline
        self.sample_rate = int(sample_rate)
        self._resample = Resampler(sample_rate)
        self._stream = None
        self._audio = np.zeros(0, np.float32)  # the utterance's samples from self._audio_start on
        self._audio_start = 0  # timeline sample of self._audio[0]
        self._utterance_end = 0  # timeline sample after the utterance's last sample

    def slot(self, g):
        """Timeline samples [a, b) of frame g."""
        rate = SAMPLE_RATE / self.fps
        return int(round(g * rate)), int(round((g + 1) * rate))

    @property
    def audio_samples(self):
        """Timeline position (in samples) of the end of the audio pushed so far."""
        return self._utterance_end if self._stream is not None else self.slot(self.next_index)[0]

    @property
    def speaking(self):
        return self._stream is not None

    def push(self, pcm):
        """Add speech (float32 or int16 mono at the session's rate); return the frames it completed."""
        samples = self._resample(as_float_pcm(pcm))
        if self._stream is None:
            self._stream = self.engine.stream(first_frame=self.next_index)
            self._audio_start = self._utterance_end = self.slot(self.next_index)[0]
            self._audio = np.zeros(0, np.float32)
        self._audio = np.concatenate((self._audio, samples))
        self._utterance_end += len(samples)
        return self._live(self._stream.push(samples), synced=True)

    def end_utterance(self):
        """Flush the utterance (as inference.py ends a clip), then the avatar's own frames to the
        end of its audio. [] when no utterance is open."""
        if self._stream is None:
            return []
        tail = self._resample(np.zeros(0, np.float32), last=True)
        self._resample = Resampler(self.sample_rate)  # flushed: a fresh one for the next utterance
        frames = []
        if len(tail):
            self._audio = np.concatenate((self._audio, tail))
            self._utterance_end += len(tail)
            frames += self._live(self._stream.push(tail), synced=True)
        frames += self._live(self._stream.finish(), synced=True)
        while self.slot(self.next_index)[0] < self._utterance_end:
            frames.append(self._own_frame())
        self._stream = None
        self._audio = np.zeros(0, np.float32)
        return frames

    def idle_until(self, seconds):
        """End any utterance, then the avatar's own frames over silence up to timeline time `seconds`."""
        frames = self.end_utterance()
        while self.next_index < int(seconds * self.fps):
            frames.append(self._own_frame())
        return frames

    def _own_frame(self):
        g = self.next_index
        image = np.array(self.engine.avatar.frame(self.engine.avatar.frame_index(g)))
        return self._emit(g, image, synced=False)

    def _live(self, frames, synced):
        first = self._stream.first_frame
        return [self._emit(first + f.index, f.image, synced) for f in frames]

    def _emit(self, g, image, synced):
        a, b = self.slot(g)
        audio = np.zeros(b - a, np.float32)
        if self._stream is not None:  # the utterance's samples in this slot (zeros past its end)
            lo, hi = max(a, self._audio_start), min(b, self._audio_start + len(self._audio))
            if hi > lo:
                audio[lo - a:hi - a] = self._audio[lo - self._audio_start:hi - self._audio_start]
            drop = max(0, min(b, self._audio_start + len(self._audio)) - self._audio_start)
            self._audio, self._audio_start = self._audio[drop:], self._audio_start + drop
        self.next_index = g + 1
        return LiveFrame(g, g / self.fps, image, audio, synced)
