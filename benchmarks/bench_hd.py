"""inference.py with a 288 generator on CPU: frames per second against the compute bound, and peak RSS.

    python benchmarks/bench_hd.py                            # fp32 and bf16, videos of 50 and 100 frames
    python benchmarks/bench_hd.py --lengths 50 --runs fp32   # one short run
    python benchmarks/bench_hd.py --img_size 96              # the same figures for a 96 generator

The compute bound is HD.md's GFLOP per generator frame (36.9 at 288, 7.9 at 96)
divided by the GFLOP/s this machine gets from a large matmul in that precision:
the frames per second the generator could reach if every convolution ran at
matmul speed. Inputs (a synthetic 600x480 face video with as many frames as the
audio needs, so no frame repeats; speech-like audio; a checkpoint of recipe
weights at --img_size) are generated once into --workdir. Every run is a fresh
process with `--box` (no face detection); peak RSS is its ru_maxrss, flat in
the video's length when memory is bounded.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.bench_inference import BOX, FPS, make_inputs  # noqa: E402

GFLOP_PER_FRAME = {96: 7.9, 288: 36.9}  # HD.md: the generator, one frame


def sized_checkpoint(folder, img_size):
    """A checkpoint of recipe weights at img_size, its size recorded (checkpoints.save_checkpoint)."""
    from checkpoints import save_checkpoint
    from models import Wav2Lip
    from synthetic import recipe_state_dict
    path = os.path.join(folder, f"wav2lip_recipe_{img_size}.pth")
    if not os.path.isfile(path):
        model = Wav2Lip(img_size)
        model.load_state_dict(recipe_state_dict(model))
        save_checkpoint(path, model)
    return path


def matmul_gflops(precision, n=2048, repeat=5):
    """GFLOP/s of an n x n matmul in `precision` on this machine's CPU threads (best of `repeat`)."""
    import torch
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def child(video, speech, checkpoint, outfile, precision):
    """Run inference.py once in this process; print JSON with seconds, stage seconds and peak RSS."""
    from inference import main
    start = time.perf_counter()
    stats = main(["--checkpoint_path", checkpoint, "--face", video, "--audio", speech, "--outfile", outfile,
                  "--box", *map(str, BOX), "--precision", precision, "--quiet"])
    print("RESULT " + json.dumps({"seconds": time.perf_counter() - start, "frames": stats["frames"],
                                  "stages": stats["stage_seconds"],
                                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def timed_run(video, speech, checkpoint, outfile, precision):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", video, speech, checkpoint, outfile, precision]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"{precision} run failed:\n{result.stderr[-2000:]}")
    line = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default=os.path.join(ROOT, "benchmarks", "out", "hd"))
    p.add_argument("--img_size", type=int, choices=sorted(GFLOP_PER_FRAME), default=288)
    p.add_argument("--lengths", type=int, nargs="+", default=[50, 100], help="video lengths, frames")
    p.add_argument("--runs", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(*args.child)
    import torch
    checkpoint = sized_checkpoint(args.workdir, args.img_size)
    gflop = GFLOP_PER_FRAME[args.img_size]
    print(f"{args.img_size}x{args.img_size} generator, {gflop} GFLOP a frame; 600x480 video, --box; "
          f"{torch.get_num_threads()} CPU threads")
    for precision in args.runs:
        peak = matmul_gflops(precision)
        print(f"{precision}: 2048x2048 matmul {peak:.0f} GFLOP/s -> compute bound {peak / gflop:.2f} frames/s")
        for frames in args.lengths:
            video, speech, _ = make_inputs(args.workdir, frames, frames / FPS, tag=f"_{frames}")
            r = timed_run(video, speech, checkpoint, os.path.join(args.workdir, f"out_{precision}.mp4"), precision)
            generate = r["stages"].get("generate", float("nan"))
            print(f"  {r['frames']:4d} frames: {r['frames'] / r['seconds']:5.2f} frames/s end to end, generator "
                  f"{r['frames'] / generate:5.2f} frames/s ({100 * r['frames'] * gflop / generate / peak:4.1f}% of "
                  f"the bound), peak RSS {r['rss_mb']:5.0f} MB")


if __name__ == "__main__":
    main()
