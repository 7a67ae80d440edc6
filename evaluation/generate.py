"""Dubbing evaluation pairs as the published scripts do, on this project's streamed inference.

`gen_videos_from_filelist.py` (LRS2/LRS3/LRW test pairs) and
`real_videos_inference.py` (ReSyncED) differ from inference.py in a few
published ways, all kept here:

- mel windows stop before the window on the last 16 mel frames;
- a video shorter than its audio is not looped: the pair is skipped (or, in
  ReSyncED's tts mode, frames are duplicated evenly, `stretched_indices`);
- boxes are always smoothed and a frame without a face skips the pair;
- real videos are first downscaled to a shorter side of at most --max_frame_res,
  then by the factor that brings the first frame's face nearest --face_res
  (`face_rescale_factor`);
- results are `<results_dir>/<line index>.mp4`.

A pair that cannot be dubbed is reported and skipped; the others go on.
"""
import os
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from itertools import islice

from cli import UserError


@dataclass
class PairOptions:
    pads: tuple = (0, 0, 0, 0)
    face_det_batch_size: int = 64
    wav2lip_batch_size: int = 128
    fps: float = None  # None: the video's own frame rate
    max_frame_res: int = None  # ReSyncED: shorter side at most this
    face_res: int = None  # ReSyncED: rescale so the face is about this size...
    min_frame_res: int = 480  # ...without the shorter side going below this
    stretch: bool = False  # ReSyncED tts mode: duplicate frames of a short video


def stretched_indices(count, length):
    """Source frame of each of `length` output frames, `count` frames stretched as the published
    `increase_frames` does.

    Each pass over the frames is meant to double every (length / n)-th frame, but
    its counter runs ahead of the index after the first duplicate: in practice
    each pass repeats the first frame once, so the start of the video holds
    while the rest plays at its speed. Kept as published: the paper's tts results.
    """
    indices = list(range(count))
    while len(indices) < length:
        every = float(length) / len(indices)
        stretched, next_duplicate = [], 0.0
        for i, index in enumerate(indices):
            stretched.append(index)
            if int(-(-next_duplicate // 1)) == i:  # ceil, as np.ceil on a float
                stretched.append(index)
            next_duplicate += every
        indices = stretched
    return indices[:length]


def face_rescale_factor(face_size, frame_height, frame_width, face_res, min_frame_res):
    """The published `rescale_frames` factor: the first of 2..15 that stops helping, minus one.

    The loop compares with the *original* size difference (never updated), and
    falls through to 14 when nothing stops it.
    """
    difference = abs(face_size - face_res)
    factor = 15
    for factor in range(2, 16):
        if min(frame_height // factor, frame_width // factor) < min_frame_res:
            break
        if abs(face_size // factor - face_res) >= difference:
            break
    return factor - 1


class PairSource:
    """The first `length` frames of a FaceSource, or its frames stretched to `length` (tts mode)."""

    def __init__(self, source, length, stretch=False, fps=None):
        self.path, self.fps = source.path, float(fps or source.fps)
        self._source, self.frame_count = source, length
        self._repeats = None
        if source.frame_count < length:
            if not stretch:
                raise UserError(f"{source.path}: the video has {source.frame_count} frames, fewer than "
                                f"the {length} its audio needs")
            self._repeats = Counter(stretched_indices(source.frame_count, length))

    def frames(self):
        count = 0
        if self._repeats is None:
            frames = islice(self._source.frames(), self.frame_count)
        else:
            frames = (frame for index, frame in enumerate(self._source.frames())
                      for _ in range(self._repeats[index]))
        for frame in frames:
            count += 1
            yield frame
        if count < self.frame_count:
            raise UserError(f"{self.path}: the video ended after {count} frames, fewer than the "
                            f"{self.frame_count} its audio needs")


class PairDubber:
    """Dubs face videos with other audio, one generator and one detector for all pairs."""

    def __init__(self, checkpoint_path, options, device="auto", precision="fp32"):
        from devices import get_device
        from inference import build_runner
        from streaming import load_face_detector
        self.options = options
        self.device = get_device(device)
        self.runner = build_runner(checkpoint_path, self.device, precision, options.wav2lip_batch_size)
        self.detector = load_face_detector(self.device)

    def _source(self, face_video):
        from streaming import FaceSource
        o = self.options
        source = FaceSource(face_video, max_short_side=o.max_frame_res)
        if o.face_res is None:
            return source
        first = next(source.frames(), None)
        if first is None:
            raise UserError(f"{face_video}: the video has no frames")
        rect = self.detector.get_detections_for_batch(first[None])[0]
        if rect is None:
            raise UserError(f"{face_video}: no face detected in the first frame")
        x1, y1, x2, y2 = rect
        factor = face_rescale_factor(max(abs(y1 - y2), abs(x1 - x2)), *first.shape[:2],
                                     o.face_res, o.min_frame_res)
        return FaceSource(face_video, max_short_side=o.max_frame_res, resize_factor=factor)

    def dub(self, face_video, audio_source, outfile):
        """Write `outfile`; returns its frame count. UserError when the pair cannot be dubbed."""
        from inference import load_mel, write_video
        from lipsync import mel_chunk_starts
        from streaming import FaceBoxes, StageTimes, dub
        o = self.options
        for path in (face_video, audio_source):
            if not os.path.isfile(path):
                raise UserError(f"{path}: file not found")
        with tempfile.TemporaryDirectory(prefix="wav2lip-eval-") as workdir:
            mel = load_mel(audio_source, workdir)
            source = self._source(face_video)
            fps = o.fps or source.fps
            length = len(mel_chunk_starts(mel.shape[1], fps, final_window=False))
            if length == 0:
                raise UserError(f"{audio_source}: the audio is shorter than one mel window")
            pair = PairSource(source, length, stretch=o.stretch, fps=fps)
            boxes = FaceBoxes(detector=self.detector, batch_size=o.face_det_batch_size, pads=o.pads,
                              smooth=True, no_face="error")
            self.runner.new_video()
            frames = dub(pair, mel, self.runner, boxes, batch_size=o.wav2lip_batch_size,
                         final_window=False)
            return write_video(frames, outfile, fps, audio_source, StageTimes())


def dub_pairs(dubber, pairs, results_dir, resume=False, progress=True):
    """Dub (face video, audio source) pairs to results_dir/<index>.mp4; returns the failures.

    pairs: [(index, face_video, audio_source)]. A failure is reported on stderr
    as it happens and listed at the end; it does not stop the others.
    """
    from tqdm import tqdm
    os.makedirs(results_dir, exist_ok=True)
    failures = []
    for index, face_video, audio_source in tqdm(pairs, desc="dubbing", unit="pair", disable=not progress):
        outfile = os.path.join(results_dir, f"{index}.mp4")
        if resume and os.path.isfile(outfile):
            continue
        try:
            dubber.dub(face_video, audio_source, outfile)
        except UserError as e:
            tqdm.write(f"skipped pair {index}: {e}", file=sys.stderr)
            failures.append((index, str(e)))
    return failures


def read_pair_lines(filelist):
    """Non-empty lines of a pair list as (line index, first name, second name); UserError if malformed."""
    if not os.path.isfile(filelist):
        raise UserError(f"{filelist}: file not found (--filelist)")
    pairs = []
    with open(filelist) as f:
        for number, line in enumerate(f):
            if not line.strip():
                continue
            names = line.split()
            if len(names) != 2:
                raise UserError(f"{filelist}: line {number + 1} should hold two names, found {len(names)}")
            pairs.append((number, *names))
    return pairs


def report(failures, total, results_dir):
    """The closing lines of a generation run; exit status 1 if any pair failed."""
    print(f"{total - len(failures)} of {total} videos written to {results_dir}")
    if failures:
        print(f"{len(failures)} pairs failed:", file=sys.stderr)
        for index, message in failures:
            print(f"  {index}: {message}", file=sys.stderr)
        return 1
    return 0


def add_generation_arguments(parser, pads, face_det_batch_size):
    """The flags both published generation scripts take, with each script's defaults."""
    parser.add_argument("--results_dir", required=True, help="folder to write <index>.mp4 into")
    parser.add_argument("--data_root", required=True, help="folder the names of the pair list are under")
    parser.add_argument("--checkpoint_path", required=True, help="Wav2Lip generator checkpoint")
    parser.add_argument("--pads", nargs=4, type=int, default=list(pads), metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
                        help=f"pixels added to the detected box (default {' '.join(map(str, pads))})")
    parser.add_argument("--face_det_batch_size", type=int, default=face_det_batch_size,
                        help="frames per face-detector batch")
    parser.add_argument("--wav2lip_batch_size", type=int, default=128, help="frames per generator batch")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="generator precision (fp32: the published numbers)")
    parser.add_argument("--resume", action="store_true", help="skip pairs whose result already exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def check_generation_arguments(args):
    for name in ("face_det_batch_size", "wav2lip_batch_size"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if min(args.pads) < 0:
        raise UserError(f"--pads must not be negative, got {' '.join(map(str, args.pads))}")
    if not os.path.isdir(args.data_root):
        raise UserError(f"{args.data_root}: folder not found (--data_root)")
    if not os.path.isfile(args.checkpoint_path):
        raise UserError(f"{args.checkpoint_path}: file not found (--checkpoint_path)")
