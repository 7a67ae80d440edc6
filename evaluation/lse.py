"""LSE-D and LSE-C: lip-sync error scores of a video with syncnet_python's SyncNet, streamed.

    net = load_syncnet(device=device)
    score = score_video("result.mp4", net)          # SyncScore(offset, confidence, min_dist, ...)
    score = score_frames(net, frames, samples)      # any BGR frames at 25 fps + int16 16 kHz audio

The arithmetic is the published one (EVALUATION.md section 3): one embedding
per 5-frame window of whole frames resized to 224x224, and per window of 20
MFCC columns; for each window the distances to the audio embeddings shifted by
-vshift..vshift frames; their mean over the video is the distance curve.
LSE-D is its minimum, LSE-C its median minus the minimum, the offset
`vshift - argmin` frames. The reference held the whole video in memory as
float64; here frames are decoded in a background thread and scored batch by
batch, and only 31 distances per frame are kept.
"""
import math
import os
import tempfile
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from cli import UserError
from evaluation.syncnet import FACE_SIZE, MFCC_PER_FRAME, MFCC_WINDOW, WINDOW_FRAMES

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
MFCC_WINDOW_SAMPLES = 400  # python_speech_features: 25 ms window
MFCC_STEP_SAMPLES = 160  # and 10 ms step: 100 columns per second, 4 per video frame
PREEMPHASIS = 0.97
VSHIFT = 15
BATCH_SIZE = 20
TRIM_EVERY = 10  # batches between returns of the heap's free pages to the OS
assert SAMPLE_RATE // MFCC_STEP_SAMPLES == MFCC_PER_FRAME * FPS


def mfcc(samples, sample_rate=SAMPLE_RATE, block_columns=8192):
    """syncnet_python's MFCC of int16 samples: python_speech_features.mfcc with its defaults, (13, T).

    Computed in blocks of columns (the library frames the whole signal at once:
    gigabytes for an hour); each block carries the previous sample into the
    pre-emphasis, so the blocks give the whole-signal values.
    """
    import python_speech_features
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"MFCC windows are set for {SAMPLE_RATE} Hz audio, got {sample_rate} Hz")
    samples = np.asarray(samples)
    n = len(samples)
    if n <= MFCC_WINDOW_SAMPLES:
        columns = 1
    else:
        columns = 1 + math.ceil((n - MFCC_WINDOW_SAMPLES) / MFCC_STEP_SAMPLES)
    blocks = []
    for first in range(0, columns, block_columns):
        last = min(columns, first + block_columns)  # columns [first, last)
        start = first * MFCC_STEP_SAMPLES
        segment = samples[start:(last - 1) * MFCC_STEP_SAMPLES + MFCC_WINDOW_SAMPLES].astype(np.float64)
        emphasised = np.empty_like(segment)
        emphasised[1:] = segment[1:] - PREEMPHASIS * segment[:-1]
        emphasised[0] = segment[0] - PREEMPHASIS * samples[start - 1] if start > 0 else segment[0]
        blocks.append(python_speech_features.mfcc(emphasised, sample_rate, preemph=0))
    return np.concatenate(blocks).T  # (13, T)


@dataclass
class SyncScore:
    """One video's scores. `dists`: (windows, 2*vshift+1) distances, for frame-wise confidence."""
    offset: int  # audio-visual offset in frames (0: in sync)
    confidence: float  # LSE-C
    min_dist: float  # LSE-D
    mdist: np.ndarray  # (2*vshift+1,) mean distance per shift, shift -vshift first
    frames: int  # frames scored (audio and video both present)
    dists: np.ndarray = None


class DistanceCurve:
    """Distances between video embedding i and audio embeddings i-vshift..i+vshift, as they arrive.

    The reference pads the audio embeddings with vshift zero rows at both ends;
    window i is final once audio embedding i+vshift exists or the stream ends.
    Holds at most a batch plus 2*vshift embeddings.
    """

    def __init__(self, vshift=VSHIFT):
        self.vshift = vshift
        self._video = []  # embeddings whose distances are pending
        self._audio = None  # padded audio rows from index self._audio_start (padded coordinates)
        self._audio_start = 0
        self._done = 0  # windows finished
        self._rows = []

    def add(self, video, audio):
        """Embeddings (B, D) of the next B windows, video and audio."""
        if self._audio is None:
            self._audio = audio.new_zeros((self.vshift, audio.shape[1]))
        self._audio = torch.cat([self._audio, audio])
        self._video.append(video)
        self._flush(final=False)

    def _flush(self, final):
        if not self._video:
            return
        video = torch.cat(self._video)
        width = 2 * self.vshift + 1
        audio = self._audio
        if final:
            audio = torch.cat([audio, audio.new_zeros((self.vshift, audio.shape[1]))])
        # Window i needs padded rows i .. i+2*vshift.
        ready = min(len(video), self._audio_start + len(audio) - width + 1 - self._done)
        if ready > 0:
            local = self._done - self._audio_start
            shifted = audio[local:local + ready + width - 1].unfold(0, width, 1)  # (ready, D, width)
            shifted = shifted.permute(0, 2, 1)  # (ready, width, D)
            self._rows.append(F.pairwise_distance(video[:ready, None, :].expand_as(shifted), shifted))
            self._done += ready
            video = video[ready:]
        self._video = [video] if len(video) else []
        drop = self._done - self._audio_start  # audio rows no later window can need
        if drop > 0 and not final:
            self._audio = self._audio[drop:]
            self._audio_start += drop

    def finish(self):
        """(windows, 2*vshift+1) float32 distances."""
        self._flush(final=True)
        if not self._rows:
            return torch.zeros((0, 2 * self.vshift + 1))
        return torch.cat(self._rows)


def scores_from_distances(dists, vshift=VSHIFT):
    """offset, LSE-C, LSE-D and the mean curve from per-window distances, as the reference computes them."""
    mdist = dists.T.contiguous().mean(1)  # the reference: torch.stack(dists, 1).mean(1)
    min_dist, min_index = torch.min(mdist, 0)
    offset = vshift - int(min_index)
    confidence = torch.median(mdist) - min_dist  # torch.median: the lower middle of 31 values
    return offset, float(confidence), float(min_dist), mdist.numpy()


def _resized(frame):
    import cv2
    if frame.shape[:2] != (FACE_SIZE, FACE_SIZE):
        frame = cv2.resize(frame, (FACE_SIZE, FACE_SIZE))  # bilinear, as the reference
    return frame


class SyncScorer:
    """Scores videos with one SyncNet, in batches of windows on `device`."""

    def __init__(self, syncnet, device="cpu", batch_size=BATCH_SIZE, vshift=VSHIFT):
        if batch_size < 1:
            raise UserError(f"--batch_size must be at least 1, got {batch_size}")
        if vshift < 1:
            raise UserError(f"--vshift must be at least 1, got {vshift}")
        self.device = torch.device(device)
        self.syncnet = syncnet.to(self.device).eval()
        self.batch_size = batch_size
        self.vshift = vshift

    def _lip_embeddings(self, windows):
        """(B, 5, 224, 224, 3) uint8 BGR windows -> (B, 1024).

        Permuted, not copied, to (B, 3, 5, 224, 224): channels-last memory, which
        oneDNN's 3-D convolutions run about twice as fast as NCDHW.
        """
        x = torch.from_numpy(windows).to(self.device).float()
        return self.syncnet.forward_lip(x.permute(0, 4, 1, 2, 3))

    def _windows(self, frames, usable):
        """Batches of (first window index, (B, 5, 224, 224, 3) uint8) over at most `usable` frames."""
        from streaming import prefetch
        buffer = []
        first = 0
        frames_seen = 0
        for frame in prefetch(map(_resized, frames), size=2 * self.batch_size):
            if frames_seen == usable:
                break
            buffer.append(frame)
            frames_seen += 1
            # Window i is scored only once frame i+5 exists: the reference's last window is n-6.
            if len(buffer) == self.batch_size + WINDOW_FRAMES:
                yield first, np.stack([buffer[i:i + WINDOW_FRAMES] for i in range(self.batch_size)])
                first += self.batch_size
                buffer = buffer[self.batch_size:]
        count = len(buffer) - WINDOW_FRAMES
        if count > 0:
            yield first, np.stack([buffer[i:i + WINDOW_FRAMES] for i in range(count)])

    @torch.inference_mode()
    def score(self, frames, samples, name="video", progress=None):
        """SyncScore of BGR `frames` (any size, 25 fps; an iterable) against int16 16 kHz `samples`."""
        samples = np.asarray(samples)
        audio_frames = len(samples) // SAMPLES_PER_FRAME
        if audio_frames <= WINDOW_FRAMES:
            raise UserError(f"{name}: the audio lasts {len(samples) / SAMPLE_RATE:.2f} s "
                            f"({audio_frames} frames); at least {WINDOW_FRAMES + 1} frames "
                            f"({(WINDOW_FRAMES + 1) / FPS:.2f} s) are needed to score lip sync")
        from devices import release_freed_memory
        cepstra = torch.from_numpy(mfcc(samples)).float()  # (13, T), as the reference casts it
        curve = DistanceCurve(self.vshift)
        for batch, (first, windows) in enumerate(self._windows(frames, audio_frames)):
            if batch % TRIM_EVERY == TRIM_EVERY - 1:
                release_freed_memory()  # else the heap's fragments grow with the video's length
            b = len(windows)
            starts = MFCC_PER_FRAME * torch.arange(first, first + b)
            columns = starts[:, None] + torch.arange(MFCC_WINDOW)  # (B, 20)
            mfcc_windows = cepstra[:, columns].permute(1, 0, 2)[:, None]  # (B, 1, 13, 20)
            audio = self.syncnet.forward_aud(mfcc_windows.to(self.device))
            curve.add(self._lip_embeddings(windows).float().cpu(), audio.float().cpu())
            if progress is not None:
                progress.update(b)
        dists = curve.finish()
        if len(dists) == 0:
            raise UserError(f"{name}: fewer than {WINDOW_FRAMES + 1} video frames with audio; "
                            "nothing to score")
        offset, confidence, min_dist, mdist = scores_from_distances(dists, self.vshift)
        return SyncScore(offset, confidence, min_dist, mdist, frames=len(dists) + WINDOW_FRAMES,
                         dists=dists.numpy())


def read_audio_int16(path, workdir):
    """The audio of a media file as 16 kHz mono int16 samples (memory-mapped), as the reference reads it."""
    from scipy.io import wavfile
    from videoio import extract_audio
    wav = os.path.join(workdir, "audio.wav")
    try:
        extract_audio(path, wav, SAMPLE_RATE)
    except UserError as e:
        message = str(e)
        if "does not contain any stream" in message or "matches no streams" in message:
            raise UserError(f"{path}: the file has no audio track") from None
        raise UserError(f"{path}: cannot read the file ({message.split(' | ')[-1]})") from None
    rate, samples = wavfile.read(wav, mmap=True)
    assert rate == SAMPLE_RATE and samples.dtype == np.int16
    return samples


def score_video(path, scorer, tmp_dir=None, progress=None):
    """SyncScore of a video file: its frames as JPEG at 25 fps and its audio at 16 kHz (EVALUATION.md §3)."""
    from contextlib import closing
    from videoio import jpeg_frames
    if not os.path.isfile(path):
        raise UserError(f"{path}: file not found")
    with tempfile.TemporaryDirectory(prefix="lse-", dir=tmp_dir) as workdir:
        samples = read_audio_int16(path, workdir)
        with closing(jpeg_frames(path, fps=FPS)) as frames:  # stops ffmpeg if scoring ends early
            return scorer.score(frames, samples, name=path, progress=progress)


class ScoreTable:
    """Per-video (or per-track) scores of a run, the failures, and the reference's closing lines."""

    def __init__(self):
        self.rows = []  # (name, SyncScore)
        self.failures = []  # (name, message)

    def add(self, name, score):
        self.rows.append((name, score))

    def fail(self, name, message):
        self.failures.append((name, message))

    def averages(self):
        """(mean LSE-C, mean LSE-D): the plain means over the scored items."""
        confidence = sum(s.confidence for _, s in self.rows) / len(self.rows)
        distance = sum(s.min_dist for _, s in self.rows) / len(self.rows)
        return confidence, distance

    def write_csv(self, path):
        import csv
        from fileio import atomic_output
        with atomic_output(path, suffix=".csv") as tmp, open(tmp, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["name", "offset", "LSE-C", "LSE-D", "frames"])
            for name, s in self.rows:
                out.writerow([name, s.offset, f"{s.confidence:.6f}", f"{s.min_dist:.6f}", s.frames])

    def print_summary(self, out=None, err=None):
        """The reference's two lines (when anything was scored), then the failures; returns the exit status."""
        import sys
        out, err = out or sys.stdout, err or sys.stderr
        if self.rows:
            confidence, distance = self.averages()
            print(f"Average Confidence: {confidence}", file=out)
            print(f"Average Minimum Distance: {distance}", file=out)
        if self.failures:
            print(f"{len(self.failures)} of {len(self.rows) + len(self.failures)} could not be scored:", file=err)
            for name, message in self.failures:
                print(f"  {name}: {message}", file=err)
            return 1
        return 0


def add_scoring_arguments(parser):
    """The published scoring flags (--initial_model, --batch_size, --vshift, --tmp_dir, --reference) and ours."""
    from evaluation.syncnet import default_weights_path
    parser.add_argument("--initial_model", default=os.path.relpath(default_weights_path()),
                        help="syncnet_python's weights (downloaded there when missing and online)")
    parser.add_argument("--batch_size", type=int, default=BATCH_SIZE, help="windows per SyncNet batch")
    parser.add_argument("--vshift", type=int, default=VSHIFT, help="largest audio shift tried, in frames")
    parser.add_argument("--tmp_dir", default=None, help="folder for temporary audio files (default: the system's)")
    parser.add_argument("--reference", default=None, help="accepted for the published command lines; unused")
    parser.add_argument("--csv", default=None, help="also write one row per score to this CSV file")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def scorer_from_args(args):
    from devices import get_device
    from evaluation.syncnet import load_syncnet
    if args.tmp_dir is not None:
        os.makedirs(args.tmp_dir, exist_ok=True)
    device = get_device(args.device)
    return SyncScorer(load_syncnet(args.initial_model, device), device, batch_size=args.batch_size,
                      vshift=args.vshift)
