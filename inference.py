"""Lip-sync a face video (or image) to any speech audio with a trained Wav2Lip generator.

    python inference.py --checkpoint_path checkpoints/wav2lip_gan.pth --face video.mp4 --audio speech.wav
    python inference.py --checkpoint_path checkpoints/wav2lip.pth --face photo.jpg --audio talk.mp3 \\
        --outfile results/photo.mp4 --pads 0 20 0 0
    python inference.py --checkpoint_path checkpoints/wav2lip_gan.pth --face clip.mp4 --audio a.wav \\
        --box 40 300 120 380 --precision bf16          # fixed face box, fast reduced precision
    python inference.py ... --no_face pass              # frames without a face are left as they are
    python inference.py ... --face_select largest --blend   # the largest face, blended in seamlessly
    python inference.py ... --face_point 420 260 --detect_every 5 --detect_max_side 640
    python inference.py ... --enhance gfpgan            # GFPGAN v1.4 on the lower face (checkpoints/GFPGANv1.4.pth)

The algorithm is the published one (SPEC section 9); frames are streamed, so
memory does not grow with the video. See README.md (Inference).
"""
import argparse
import os
import sys
from contextlib import closing
import tempfile
import time

import numpy as np

from cli import UserError, run_main
from hparams import SYNCNET_MEL_STEP_SIZE, hparams


def parse_bool(text):
    """--static takes no value, or an explicit one (the published tutorials pass `--static True`)."""
    value = str(text).strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint_path", required=True, help="Wav2Lip generator checkpoint (.pth)")
    add_face_arguments(p)
    p.add_argument("--audio", required=True, help="speech: a .wav or any file ffmpeg reads")
    p.add_argument("--outfile", default="results/result_voice.mp4", help="output MP4 (H.264 + AAC)")
    p.add_argument("--wav2lip_batch_size", type=int, default=128, help="frames per generator batch")
    add_device_arguments(p)
    p.add_argument("--pass_size", type=int, default=None,
                   help="faces per generator pass (default on CPU: 8 in fp32, 16 in bf16 at 96; 2 at 288; "
                        "on CUDA: --wav2lip_batch_size); any value gives the same frames")
    p.add_argument("--enhance", choices=("gfpgan",), default=None,
                   help="restore each output face with GFPGAN v1.4, blended in over the lower face only "
                        "(slow: seconds per frame on CPU)")
    p.add_argument("--enhancer_path", default=None,
                   help="GFPGAN weights for --enhance (default checkpoints/GFPGANv1.4.pth)")
    p.add_argument("--enhance_batch", type=int, default=4, help="faces per GFPGAN pass (default 4)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def add_device_arguments(p):
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="precision of the generator and the face detector: fp32 (exact), bf16 (fast on CPUs "
                        "with AMX or AVX512-BF16, slower without), fp16 (CUDA)")


def add_face_arguments(p):
    """The options that decide the face frames and boxes (shared with realtime.py prepare)."""
    from face_detection import FACE_RULES
    p.add_argument("--face", required=True, help="video or image with the face to lip-sync")
    p.add_argument("--static", type=parse_bool, nargs="?", const=True, default=False,
                   help="use only the first frame of the video (images are always static)")
    p.add_argument("--fps", type=float, default=25., help="frame rate for an image input")
    p.add_argument("--pads", nargs=4, type=int, default=[0, 10, 0, 0], metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
                   help="pixels added to the detected box (default 0 10 0 0: include the chin)")
    p.add_argument("--face_det_batch_size", type=int, default=16, help="frames per face-detector batch")
    p.add_argument("--resize_factor", type=int, default=1, help="divide the video's width and height by this")
    p.add_argument("--crop", nargs=4, type=int, default=[0, -1, 0, -1], metavar=("Y1", "Y2", "X1", "X2"),
                   help="keep only this region of the video (-1: to the edge)")
    p.add_argument("--box", nargs=4, type=int, default=[-1, -1, -1, -1], metavar=("Y1", "Y2", "X1", "X2"),
                   help="fixed face box for every frame instead of detection (-1: detect)")
    p.add_argument("--rotate", action="store_true", help="rotate the video 90 degrees clockwise")
    p.add_argument("--nosmooth", action="store_true", help="do not average face boxes over 5 frames")
    p.add_argument("--no_face", choices=("error", "pass"), default="error",
                   help="frames where no face is found: stop with an error, or pass them through")
    p.add_argument("--face_select", choices=FACE_RULES, default="score",
                   help="which face when a frame has several: score (the highest-scoring, as the "
                        "reference) or largest")
    p.add_argument("--face_point", nargs=2, type=int, default=None, metavar=("X", "Y"),
                   help="the face whose box contains this pixel when it first appears, then followed "
                        "from frame to frame; where it is lost, --no_face applies")
    p.add_argument("--detect_every", type=int, default=1, metavar="N",
                   help="detect faces on every Nth frame only, boxes in between interpolated (default 1)")
    p.add_argument("--detect_max_side", type=int, default=None, metavar="N",
                   help="detect faces on frames downscaled to this longest side (default: full size)")
    p.add_argument("--blend", action="store_true",
                   help="blend the generated lower face into the frame through a feathered mask "
                        "instead of pasting the whole box")
    p.add_argument("--box_cache", default=None, metavar="DIR",
                   help="folder of cached face boxes (default ~/.cache/wav2lip/boxes)")
    p.add_argument("--no_box_cache", action="store_true", help="neither read nor write cached boxes")


def check_args(args):
    check_face_args(args)
    for name in ("wav2lip_batch_size", "pass_size", "enhance_batch"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.enhancer_path is not None and args.enhance is None:
        raise UserError("--enhancer_path is for --enhance gfpgan: give both, or neither")
    for name in ("audio", "checkpoint_path"):
        path = getattr(args, name)
        if not os.path.isfile(path):
            raise UserError(f"{path}: file not found (--{name})")


def check_face_args(args):
    """UserError for face options out of range (shared with realtime.py prepare)."""
    from face_detection.detect import MIN_SIDE
    for name in ("face_det_batch_size", "resize_factor", "detect_every"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not args.fps > 0:
        raise UserError(f"--fps must be positive, got {args.fps}")
    if min(args.pads) < 0:
        raise UserError(f"--pads must not be negative, got {' '.join(map(str, args.pads))}")
    if args.detect_max_side is not None and args.detect_max_side < MIN_SIDE:
        raise UserError(f"--detect_max_side must be at least {MIN_SIDE} pixels, got {args.detect_max_side}")
    if args.face_point is not None and args.face_select != "score":
        raise UserError("--face_point and --face_select choose the face two ways: give one of them")
    if not os.path.isfile(args.face):
        raise UserError(f"{args.face}: file not found (--face)")


def load_speech(path, workdir):
    """16 kHz mono float32 samples of any audio file ffmpeg reads (non-WAV decoded into `workdir`);
    UserError for unreadable or empty audio. Silent audio is valid (a warning says so)."""
    import audio
    from videoio import extract_audio
    wav_path = path
    if os.path.splitext(path)[1].lower() != ".wav":
        wav_path = os.path.join(workdir, "audio.wav")
        extract_audio(path, wav_path, hparams.sample_rate)
    try:
        wav = audio.load_wav(wav_path, hparams.sample_rate)
    except audio.AudioError as e:
        reason = str(e).removeprefix(f"{wav_path}: ")
        raise UserError(f"{path}: {reason}") from None
    if wav.size == 0:
        raise UserError(f"{path}: the audio is empty")
    if not np.any(wav):
        print(f"warning: {path}: the audio is silent (all samples zero): the mouth will stay closed",
              file=sys.stderr)
    return wav


def load_mel(path, workdir):
    """The 80-band mel of `path` at 16 kHz; UserError for unreadable, empty or too short audio.

    Silent (all-zero) audio is valid, as in the reference: the mouth stays closed (a warning says so).
    """
    import audio
    wav = load_speech(path, workdir)
    try:
        mel = audio.melspectrogram(wav)
    except audio.AudioError as e:
        raise UserError(f"{path}: {e}") from None
    if mel.shape[1] < SYNCNET_MEL_STEP_SIZE:
        seconds = SYNCNET_MEL_STEP_SIZE * hparams.hop_size / hparams.sample_rate
        raise UserError(f"{path}: the audio lasts {len(wav) / hparams.sample_rate:.3f} s, "
                        f"shorter than one mel window ({seconds:.2f} s)")
    return mel


def reuse_freed_memory():
    """Have glibc keep freed blocks under 32 MB in the heap for the next generator pass.

    Its defaults return them to the OS and then page-fault fresh zeroed pages
    for every activation of every pass: a third of the fp32 time. With passes
    small enough for their activations to stay under 32 MB (lipsync.high_res_chunk),
    the heap settles at one pass's working set, whatever the video's length.
    """
    import ctypes
    import ctypes.util
    import sys
    if sys.platform.startswith("linux") and (libc := ctypes.util.find_library("c")):
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc = ctypes.CDLL(libc)
        libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest allowed threshold
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)


def size_of(frame):
    height, width = frame.shape[:2]
    return width, height


def build_runner(checkpoint_path, device, precision, batch_size, pass_size=None, fold=None):
    """The generator of `checkpoint_path` at the file's face size (96 or 288: runner.img_size),
    ready to run in passes of `pass_size` (default: by device and size); fold: see GeneratorRunner."""
    from lipsync import GeneratorRunner, default_pass_size, load_generator
    model = load_generator(checkpoint_path, device)
    micro_batch = min(pass_size or default_pass_size(device, precision, batch_size, model.img_size), batch_size)
    return GeneratorRunner(model, device, precision, micro_batch=micro_batch, fold=fold)


def load_enhancer(args, device):
    """GFPGAN for --enhance, or None; a missing, truncated or mismatched file is one CheckpointError line."""
    if args.enhance is None:
        return None
    from enhancer import DEFAULT_WEIGHTS, load_gfpgan
    return load_gfpgan(args.enhancer_path or DEFAULT_WEIGHTS, device)


def enhanced(frames, model, precision, batch_size, total, times, progress):
    """enhancer.enhance_frames over dub's (frame, coords) pairs, in `precision`, with one progress bar."""
    from tqdm import tqdm
    from enhancer import enhance_frames
    from face_detection.api import PRECISIONS
    with tqdm(total=total, desc="lip-sync + enhance", unit="frame", disable=not progress) as bar:
        yield from enhance_frames(frames, model, PRECISIONS[precision], batch_size, times=times, bar=bar)


def write_video(frames, outfile, fps, audio_path, times):
    """Encode an iterator of BGR frames (from streaming.dub) with the audio of `audio_path`.

    The encoder runs niced in a background thread; `outfile` appears only when
    complete. Returns the number of frames written.
    """
    from streaming import BackgroundWriter
    from videoio import VideoWriter
    with closing(frames), VideoWriter(outfile, fps, *size_of(first := next(frames)),
                                      audio_path=audio_path, nice=10) as video:
        writer = BackgroundWriter(video, times=times)
        try:
            writer.write(first)
            count = 1
            for frame in frames:
                writer.write(frame)
                count += 1
        finally:
            writer.join()
        start = time.perf_counter()
    times.add("encode", time.perf_counter() - start)
    return count


def face_source(args):
    from streaming import FaceSource
    return FaceSource(args.face, static=args.static, fps=args.fps, resize_factor=args.resize_factor,
                      rotate=args.rotate, crop=args.crop)


def face_boxes(args, device):
    """streaming.FaceBoxes for the face options: the fixed --box, or S3FD with its cache."""
    from streaming import BoxCache, FaceBoxes, load_face_detector
    if args.box[0] != -1:
        return FaceBoxes(box=tuple(args.box))
    settings = dict(batch=args.face_det_batch_size, device=device.type, precision=args.precision,
                    max_side=args.detect_max_side, every=args.detect_every,
                    face_select=args.face_select, face_point=args.face_point)
    cache = None if args.no_box_cache else BoxCache(args.box_cache or BoxCache.default_folder(), settings)
    detector = load_face_detector(device, precision=args.precision, max_side=args.detect_max_side)
    return FaceBoxes(detector=detector, batch_size=args.face_det_batch_size, pads=args.pads,
                     smooth=not args.nosmooth, no_face=args.no_face, cache=cache,
                     face_rule=args.face_select, face_point=args.face_point,
                     detect_every=args.detect_every)


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_args(args)
    import torch
    from blending import blend_face
    from devices import get_device
    from lipsync import mel_chunk_starts, paste_face
    from streaming import StageTimes, dub

    started = time.perf_counter()
    reuse_freed_memory()
    device = get_device(args.device)
    if args.precision == "fp16" and device.type != "cuda":
        raise UserError(f"--precision fp16 needs a CUDA device (got {device}); use bf16 on CPU")
    enhancer = load_enhancer(args, device)  # before any work: a bad weight file is one line
    with tempfile.TemporaryDirectory(prefix="wav2lip-") as workdir:
        mel = load_mel(args.audio, workdir)
        source = face_source(args)
        runner = build_runner(args.checkpoint_path, device, args.precision, args.wav2lip_batch_size,
                              args.pass_size)
        boxes = face_boxes(args, device)
        times = StageTimes()
        frames = dub(source, mel, runner, boxes, batch_size=args.wav2lip_batch_size, times=times,
                     progress=not args.quiet and enhancer is None, paste=blend_face if args.blend else paste_face,
                     with_coords=enhancer is not None)
        if enhancer is not None:  # the restored lower face, blended over the dubbed frames
            frames = enhanced(frames, enhancer, args.precision, args.enhance_batch,
                              len(mel_chunk_starts(mel.shape[1], source.fps)), times, not args.quiet)
        count = write_video(frames, args.outfile, source.fps, args.audio, times)
    seconds = time.perf_counter() - started
    if not args.quiet:
        print(f"wrote {args.outfile}: {count} frames at {source.fps:g} fps in {seconds:.1f} s "
              f"({device}, {args.precision}, {torch.get_num_threads()} threads)")
    return {"frames": count, "fps": source.fps, "seconds": seconds, "stage_seconds": dict(times),
            "encoded_faces": runner.encoded_faces}


if __name__ == "__main__":
    run_main(main)
