"""FID feature throughput: evaluation/fid.py against a port of pytorch-fid's path; peak RSS on a long video.

    python benchmarks/bench_fid.py                       # 200 frames of 160x160: PNG folder and video
    python benchmarks/bench_fid.py --frames 40 --long 0  # a quick look
    python benchmarks/bench_fid.py --repeat 3 --long 2000

The reference is pytorch-fid's own path, ported here: an ImagePathDataset
reading the PNG files one by one with PIL (`convert("RGB")`, ToTensor), a
DataLoader with min(cpus, 8) worker processes, batch 50, and the network as
published (BatchNorm layers, NCHW) under torch.no_grad. Ours is
fid.path_statistics on the same files and on the same frames as a lossless
video. Both use the recipe weights (the figures do not depend on them), and
frames/s include reading and decoding, not loading the weights. Peak RSS is
that of a fresh `python evaluation/fid.py --save_stats` process on an
H.264 video of --frames and of --long frames (flat means streaming).
"""
import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cli import run_main  # noqa: E402

SIZE = 160


class ImagePathDataset:
    """pytorch-fid's dataset: one image file per item, RGB, as a (3, H, W) float tensor in [0, 1]."""

    def __init__(self, files):
        self.files = files

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        import torch
        try:
            from PIL import Image
            rgb = np.array(Image.open(self.files[i]).convert("RGB"))
        except ImportError:  # Pillow is not a dependency of the project
            import cv2
            rgb = cv2.cvtColor(cv2.imread(self.files[i], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return torch.from_numpy(rgb).permute(2, 0, 1).contiguous().float().div(255)  # ToTensor


class ReferenceInceptionV3:
    """pytorch-fid's InceptionV3 wrapper: resize, normalise, the four blocks, [pool3]."""

    def __init__(self, net):
        import torch.nn as nn
        self.blocks = [
            nn.Sequential(net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, nn.MaxPool2d(3, 2)),
            nn.Sequential(net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, nn.MaxPool2d(3, 2)),
            nn.Sequential(net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b,
                          net.Mixed_6c, net.Mixed_6d, net.Mixed_6e),
            nn.Sequential(net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, nn.AdaptiveAvgPool2d((1, 1))),
        ]

    def __call__(self, x):
        import torch.nn.functional as F
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        for block in self.blocks:
            x = block(x)
        return [x]


def reference_features(files, model, batch_size=50):
    """pytorch-fid's get_activations on `files`: (N, 2048) float64 and the seconds it took."""
    import torch
    workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(), 8)
    start = time.perf_counter()
    loader = torch.utils.data.DataLoader(ImagePathDataset(files), batch_size=min(batch_size, len(files)),
                                         shuffle=False, drop_last=False, num_workers=workers)
    pred_arr = np.empty((len(files), 2048))
    index = 0
    for batch in loader:
        with torch.no_grad():
            pred = model(batch)[0]
        pred = pred.squeeze(3).squeeze(2).cpu().numpy()
        pred_arr[index:index + len(pred)] = pred
        index += len(pred)
    return pred_arr, time.perf_counter() - start


def our_features(path, model, batch_size=50):
    """fid.path_statistics on `path`, recording the features it computes: (N, 2048), seconds."""
    from evaluation import fid
    recorded, pool3 = [], model.pool3
    model.pool3 = lambda x: recorded.append(y := pool3(x)) or y
    try:
        start = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):  # the few-frames warning
            fid.path_statistics(path, model, batch_size, "cpu", progress=False)
        seconds = time.perf_counter() - start
    finally:
        del model.pool3
    return np.concatenate([r.numpy() for r in recorded]).astype(np.float64), seconds


def make_inputs(folder, frames, long_frames):
    import cv2
    import torch

    from evaluation.inception import FIDInceptionV3
    from synthetic import recipe_state_dict, talking_face_clip
    from videoio import VideoWriter, run_ffmpeg
    images = os.path.join(folder, "images")
    os.makedirs(images, exist_ok=True)
    _, faces = talking_face_clip(frames / 25, size=SIZE, seed=0)
    for i, face in enumerate(faces):
        cv2.imwrite(os.path.join(images, f"{i:06d}.png"), face)
    lossless = os.path.join(folder, "frames.mkv")  # FFV1: decodes to the PNGs' pixels
    run_ffmpeg(["-framerate", "25", "-i", os.path.join(images, "%06d.png"), "-c:v", "ffv1",
                "-pix_fmt", "bgr0", lossless], "to write the benchmark video")
    h264 = {}
    for n in (frames, long_frames):
        if n:
            h264[n] = os.path.join(folder, f"long{n}.mp4")
            with VideoWriter(h264[n], 25, SIZE, SIZE, preset="veryfast") as out:
                for i in range(n):
                    out.write(faces[i % len(faces)])
    weights = os.path.join(folder, "pt_inception-recipe.pth")
    torch.save(recipe_state_dict(FIDInceptionV3(), evaluation=True), weights,
               _use_new_zipfile_serialization=False)
    files = sorted(os.path.join(images, n) for n in os.listdir(images))
    return files, images, lossless, h264, weights


def peak_rss_mb(video, weights, folder):
    """ru_maxrss of one fresh fid.py process computing the statistics of `video`.

    A small Python process starts it and reads its children's ru_maxrss: a child
    forked from this (large) process would count this process's pages until exec.
    """
    out = os.path.join(folder, f"stats-{time.time_ns()}.npz")
    cmd = [sys.executable, os.path.join(ROOT, "evaluation", "fid.py"), "--save_stats", video, out,
           "--weights", weights, "--device", "cpu"]
    measure = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    result = subprocess.run([sys.executable, "-c", measure, *cmd], capture_output=True, text=True)
    returncode, maxrss_kb = (int(v) for v in result.stdout.split())
    if returncode != 0:
        raise SystemExit(f"fid.py failed on {video}:\n{result.stderr[-2000:]}")
    return maxrss_kb / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200, help="frames timed (default 200)")
    parser.add_argument("--long", type=int, default=1000,
                        help="frames of the long video for peak RSS (default 1000; 0 skips)")
    parser.add_argument("--repeat", type=int, default=1, help="alternate runs of each, report the best")
    parser.add_argument("--batch_size", type=int, default=50)
    parser.add_argument("--workdir", default=None, help="where inputs are generated (default: a temp folder)")
    args = parser.parse_args(argv)
    import torch

    from evaluation import fid
    from evaluation.inception import load_inception
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        files, images, lossless, h264, weights = make_inputs(folder, args.frames, args.long)
        print(f"{len(files)} frames of {SIZE}x{SIZE}, batch {args.batch_size}, "
              f"{torch.get_num_threads()} torch threads, recipe weights")
        reference = ReferenceInceptionV3(load_inception(weights, "cpu", fast=False))
        ours = load_inception(weights, "cpu")
        with torch.no_grad():  # oneDNN builds its kernels on first use: not timed, for either side
            warm = torch.zeros(min(args.batch_size, len(files)), 3, SIZE, SIZE)
            reference(warm)
            ours(warm[:fid.CPU_PASS].contiguous(memory_format=torch.channels_last))
        best, features = {}, {}
        runs = {"pytorch-fid port (PNG folder)": lambda: reference_features(files, reference, args.batch_size),
                "ours (PNG folder)": lambda: our_features(images, ours, args.batch_size),
                "ours (FFV1 video)": lambda: our_features(lossless, ours, args.batch_size)}
        for _ in range(args.repeat):  # alternated, so a busy moment does not fall on one side only
            for name, run in runs.items():
                features[name], seconds = run()
                best[name] = min(best.get(name, float("inf")), seconds)
        ref, mine, video = features.values()
        for name, seconds in best.items():
            print(f"  {name:32s} {len(files) / seconds:7.2f} frames/s")
        speedup = best["pytorch-fid port (PNG folder)"] / best["ours (PNG folder)"]
        print(f"  speed-up on the same files: {speedup:.2f}x")
        print(f"  max |features ours - port|: folder {np.abs(mine - ref).max():.2e}, "
              f"video {np.abs(video - ref).max():.2e}")
        for n, path in sorted(h264.items()):
            print(f"  peak RSS of fid.py --save_stats on {n} frames (H.264): "
                  f"{peak_rss_mb(path, weights, folder):.0f} MB")


if __name__ == "__main__":
    run_main(main)
