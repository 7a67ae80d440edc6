"""Peak memory of face detection on large frames: S3FD alone, and inference.py end to end.

    python benchmarks/bench_detection_memory.py                          # 1920x1080, fp32
    python benchmarks/bench_detection_memory.py --size 3840x2160 --frames 2 --precision bf16

Generates a --size video of --frames frames (synthetic faces) and speech, recipe weights
for the generator and S3FD (memory does not depend on the weight values), then runs, each
in a fresh process: detection alone (FaceAlignment over the frames, with inference.py's
malloc settings), and inference.py detecting at full resolution. Prints each process's
peak RSS (ru_maxrss; ffmpeg's memory is its own) and seconds.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cli import UserError, run_main  # noqa: E402


def child(kind, folder, precision, batch_size):
    """Run in a fresh process: detection alone or inference.py; prints a RESULT line."""
    import torch

    import inference
    from face_detection import FaceAlignment, api
    weights = os.path.join(folder, "s3fd.pth")
    api.default_weights_path = lambda: weights  # inference.py's detector reads the recipe weights
    start = time.perf_counter()
    if kind == "detect":
        import videoio
        inference.reuse_freed_memory()
        detector = FaceAlignment(device="cpu", path_to_detector=weights, precision=precision)
        with videoio.VideoReader(os.path.join(folder, "video.mp4")) as video:
            for frame in video:
                detector.detect_from_batch(frame[None])
    else:
        inference.main(["--checkpoint_path", os.path.join(folder, "wav2lip.pth"),
                        "--face", os.path.join(folder, "video.mp4"), "--audio", os.path.join(folder, "speech.wav"),
                        "--outfile", os.path.join(folder, "out.mp4"), "--precision", precision,
                        "--face_det_batch_size", str(batch_size), "--no_box_cache", "--no_face", "pass",
                        "--quiet"])
    print("RESULT " + json.dumps({"seconds": time.perf_counter() - start, "threads": torch.get_num_threads(),
                                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def write_inputs(folder, width, height, frames):
    import torch

    import videoio
    from audio import save_wav
    from checkpoints import save_checkpoint
    from face_detection import S3FD
    from hparams import SYNCNET_MEL_STEP_SIZE, hparams
    from models import Wav2Lip
    from synthetic import draw_face, recipe_state_dict, speech_like_audio
    torch.save(recipe_state_dict(S3FD()), os.path.join(folder, "s3fd.pth"))
    model = Wav2Lip()
    model.load_state_dict(recipe_state_dict(model))
    save_checkpoint(os.path.join(folder, "wav2lip.pth"), model)
    # Just enough speech for `frames` output frames at 25 fps (one mel window and 3.2 mel frames each).
    seconds = (SYNCNET_MEL_STEP_SIZE + 3.2 * (frames - 1)) * hparams.hop_size / hparams.sample_rate
    save_wav(speech_like_audio(seconds, hparams.sample_rate), os.path.join(folder, "speech.wav"), hparams.sample_rate)
    with videoio.VideoWriter(os.path.join(folder, "video.mp4"), 25, width, height) as video:
        for i in range(frames):
            video.write(draw_face(height, width, mouth_open=(i % 5) / 5, seed=i))


def run(kind, folder, args):
    command = [sys.executable, os.path.abspath(__file__), "--child", kind, "--folder", folder,
               "--precision", args.precision, "--batch_size", str(args.batch_size)]
    result = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        raise UserError(f"{kind} run failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT of the video")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--batch_size", type=int, default=16, help="--face_det_batch_size")
    parser.add_argument("--child", choices=("detect", "inference"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.folder, args.precision, args.batch_size)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise UserError(f"--size: expected WIDTHxHEIGHT, got {args.size!r}") from None
    with tempfile.TemporaryDirectory(prefix="bench-detection-memory-") as folder:
        write_inputs(folder, width, height, args.frames)
        print(f"{width}x{height}, {args.frames} frames, {args.precision}, detection batch {args.batch_size}")
        for kind in ("detect", "inference"):
            result = run(kind, folder, args)
            print(f"  {kind:>9}: peak RSS {result['rss_mb']:6.0f} MB, {result['seconds']:6.1f} s "
                  f"({result['threads']} threads)")


if __name__ == "__main__":
    run_main(main)
