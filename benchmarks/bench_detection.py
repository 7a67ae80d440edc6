"""Face detection and preprocessing throughput, with the recipe S3FD weights (the figures do not depend on them).

    python benchmarks/bench_detection.py
    python benchmarks/bench_detection.py --device cuda --frames 256 --batch_size 32 --clips 8
    python benchmarks/bench_detection.py --sizes 160x160 --max_sides 96 --clips 0

Prints detection frames/s at full resolution and downscaled (--max_sides), then
preprocess.py's videos/s and frames/s on a generated LRS2-style tree.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cli import UserError, run_main  # noqa: E402


def parse_size(text):
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--sizes: expected WIDTHxHEIGHT, got {text!r}") from None
    return width, height


def detection_fps(detector, frames, batch_size):
    from face_detection import BatchedDetection
    batched = BatchedDetection(detector, batch_size)
    batched.detect(frames[:batch_size])  # warm-up (allocator, cuDNN autotuning)
    start = time.perf_counter()
    batched.detect(frames)
    return len(frames) / (time.perf_counter() - start)


def bench_detection(args, weights, device):
    from face_detection import FaceAlignment
    from synthetic import draw_face
    print(f"detection on {device}, batch {args.batch_size}, {args.frames} frames per figure")
    detectors = {side: FaceAlignment(device=device, path_to_detector=weights, max_side=side)
                 for side in [None] + args.max_sides}
    for size in args.sizes.split(","):
        width, height = parse_size(size)
        frames = [draw_face(height, width, mouth_open=(i % 10) / 10, seed=i % 4) for i in range(args.frames)]
        for side, detector in detectors.items():
            if side is None or side < max(width, height):
                name = "full resolution" if side is None else f"max_side {side}"
                print(f"  {width}x{height} {name:>16}: {detection_fps(detector, frames, args.batch_size):7.1f} frames/s")


def bench_preprocess(args, weights, folder):
    import preprocess
    from synthetic import write_talking_video
    data_root = os.path.join(folder, "main")
    for k in range(args.clips):
        group = os.path.join(data_root, f"{k // 4:05d}")
        os.makedirs(group, exist_ok=True)
        write_talking_video(os.path.join(group, f"{k % 4:05d}.mp4"), args.seconds, 160, 160, seed=k)
    print(f"preprocess.py: {args.clips} generated clips of {args.seconds} s at 160x160, "
          f"--batch_size {args.batch_size}, --ngpu {args.ngpu}")
    for max_side in (None, min(args.max_sides)):
        argv = ["--data_root", data_root, "--preprocessed_root", os.path.join(folder, f"out{max_side}"),
                "--batch_size", str(args.batch_size), "--ngpu", str(args.ngpu), "--detector", weights]
        if max_side is not None:
            argv += ["--max_side", str(max_side)]
        summary = preprocess.main(argv)
        print(f"  max_side {max_side}: {summary['processed'] / summary['seconds']:.2f} videos/s, "
              f"{summary['frames'] / summary['seconds']:.1f} frames/s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--sizes", default="160x160,640x480", help="frame sizes WIDTHxHEIGHT, comma separated")
    parser.add_argument("--frames", type=int, default=16, help="frames timed per figure (default 16)")
    parser.add_argument("--batch_size", type=int, default=8, help="detection batch size (default 8)")
    parser.add_argument("--max_sides", default="96,320",
                        help="downscale settings timed beside full resolution, comma separated (default 96,320)")
    parser.add_argument("--clips", type=int, default=4, help="generated clips for preprocess.py; 0 skips (default 4)")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each clip (default 1.0)")
    parser.add_argument("--ngpu", type=int, default=1, help="preprocess.py --ngpu (default 1: the GPU if any, else CPU)")
    args = parser.parse_args(argv)
    try:
        args.max_sides = sorted(int(v) for v in args.max_sides.split(","))
    except ValueError:
        raise UserError(f"--max_sides: expected integers, got {args.max_sides!r}") from None

    import torch

    from devices import get_device
    from face_detection import S3FD
    from synthetic import recipe_state_dict
    device = get_device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    with tempfile.TemporaryDirectory() as folder:
        weights = os.path.join(folder, "s3fd_recipe.pth")
        torch.save(recipe_state_dict(S3FD()), weights)
        bench_detection(args, weights, device)
        if args.clips > 0:
            bench_preprocess(args, weights, folder)


if __name__ == "__main__":
    run_main(main)
