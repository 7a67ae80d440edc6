"""Time LSE scoring against the published algorithm: frames/s, the scores of both, peak RSS.

    python benchmarks/bench_lse.py                      # a 20 s LRS2-sized (160x160) talking video
    python benchmarks/bench_lse.py --seconds 20 --long 4 # also a 4x longer one (memory flatness)
    python benchmarks/bench_lse.py --size 640 360 --repeat 3

Every run is a fresh Python process that loads SyncNet (recipe weights, as
syncnet_v2.model is laid out) and scores one video from its file: frames and
audio decoded by ffmpeg, as each implementation does it. Frames/s counts the
video's frames over the whole run (decoding included, Python start-up not).
Peak RSS is the process's ru_maxrss (ffmpeg's own memory not counted, either side).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def make_inputs(folder, seconds, width, height):
    import torch
    from evaluation.syncnet import SyncNet
    from synthetic import recipe_state_dict, write_talking_video
    os.makedirs(folder, exist_ok=True)
    weights = os.path.join(folder, "syncnet_recipe.model")
    if not os.path.isfile(weights):
        torch.save(recipe_state_dict(SyncNet(), evaluation=True), weights)
    video = os.path.join(folder, f"talk_{width}x{height}_{seconds:g}s.mp4")
    if not os.path.isfile(video):
        write_talking_video(video, seconds=seconds, width=width, height=height, seed=7)
    return video, weights


def child(kind, video, weights):
    """Score once in this process; print JSON with the scores, seconds and peak RSS."""
    import torch
    from evaluation.syncnet import load_syncnet
    net = load_syncnet(weights, "cpu")
    start = time.perf_counter()
    if kind == "reference":
        from benchmarks.reference_lse import evaluate
        offset, confidence, distance = evaluate(net, video)
    else:
        from evaluation.lse import SyncScorer, score_video
        score = score_video(video, SyncScorer(net))
        offset, confidence, distance = score.offset, score.confidence, score.min_dist
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"offset": offset, "confidence": confidence, "distance": distance, "seconds": seconds,
                      "peak_mb": peak_mb, "threads": torch.get_num_threads()}))


def run(kind, video, weights):
    out = subprocess.run([sys.executable, __file__, "--child", kind, video, weights], capture_output=True,
                         text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def frames_of(video):
    from videoio import VideoReader
    with VideoReader(video) as v:
        return v.frame_count


def bench(video, weights, kinds, repeat):
    frames = frames_of(video)
    results = {kind: [] for kind in kinds}
    for _ in range(repeat):  # alternate the kinds, so drift of a shared machine hits all alike
        for kind in kinds:
            results[kind].append(run(kind, video, weights))
    print(f"\n{os.path.basename(video)}: {frames} frames")
    print(f"{'run':>10} {'frames/s':>9} {'seconds':>8} {'peak RSS':>9} {'offset':>6} {'LSE-C':>10} {'LSE-D':>10}")
    base = None
    for kind in kinds:
        seconds = statistics.median(r["seconds"] for r in results[kind])
        last = results[kind][-1]
        speed = frames / seconds
        base = base or speed
        print(f"{kind:>10} {speed:9.1f} {seconds:8.2f} {max(r['peak_mb'] for r in results[kind]):7.0f}MB "
              f"{last['offset']:6d} {last['confidence']:10.5f} {last['distance']:10.5f}  ({speed / base:.2f}x)")
    return results


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(*sys.argv[2:5])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="length of the talking video")
    p.add_argument("--size", type=int, nargs=2, default=(160, 160), metavar=("W", "H"))
    p.add_argument("--long", type=float, default=0, help="also score a video this many times longer")
    p.add_argument("--repeat", type=int, default=1, help="runs of each kind (medians reported)")
    p.add_argument("--kinds", nargs="+", default=["reference", "ours"], choices=["reference", "ours"])
    p.add_argument("--workdir", default=os.path.join(ROOT, "benchmarks", ".lse_inputs"))
    args = p.parse_args()
    video, weights = make_inputs(args.workdir, args.seconds, *args.size)
    bench(video, weights, args.kinds, args.repeat)
    if args.long:
        long_video, _ = make_inputs(args.workdir, args.seconds * args.long, *args.size)
        bench(long_video, weights, args.kinds, 1)


if __name__ == "__main__":
    main()
