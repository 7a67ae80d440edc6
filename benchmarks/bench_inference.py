"""Time inference.py against the published algorithm: seconds per stage, output fps, peak RSS.

    python benchmarks/bench_inference.py                 # the issue's input: 600x480, 7.4 s video, 14.2 s audio
    python benchmarks/bench_inference.py --long          # also a 10x longer video and audio (RSS flatness)
    python benchmarks/bench_inference.py --long 3 --psnr_frames 100
    python benchmarks/bench_inference.py --skip_reference --runs fp32
    python benchmarks/bench_inference.py --repeat 3       # alternate 3 runs of each, report medians
    python benchmarks/bench_inference.py --detect         # with S3FD face detection (recipe weights), and
                                                          # the opt-in detection speed-ups with their box errors
    python benchmarks/bench_inference.py --detect_bound   # only S3FD's GFLOP/frame and this CPU's floor for it

Inputs (synthetic face video, speech-like audio, recipe-weight checkpoint) are
generated once into --workdir. Every timed run is a fresh Python process;
peak RSS is that process's ru_maxrss (ffmpeg's own memory is not counted,
for either side). `--box` is used, so no face detection is timed, unless --detect:
then both sides detect faces with S3FD (recipe weights, written into --workdir: the
timing does not depend on them; they find one steady box per frame), ours without
its box cache, and the runs also include `--detect_every 5` and `--detect_max_side
320`, each with its face rects' error against full detection (from the box cache
each run writes).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

WIDTH, HEIGHT, FPS = 600, 480, 25
BOX = (120, 420, 150, 450)  # y1 y2 x1 x2: the drawn face's region


def make_inputs(folder, video_frames, audio_seconds, tag=""):
    from audio import save_wav
    from synthetic import draw_face, speech_like_audio
    from videoio import VideoWriter
    os.makedirs(folder, exist_ok=True)
    video, speech = os.path.join(folder, f"face{tag}.mp4"), os.path.join(folder, f"speech{tag}.wav")
    if not os.path.isfile(video):
        with VideoWriter(video, FPS, WIDTH, HEIGHT, preset="veryfast") as out:
            for i in range(video_frames):
                out.write(draw_face(HEIGHT, WIDTH, mouth_open=0.5 + 0.5 * np.sin(i / 3), seed=0))
    if not os.path.isfile(speech):
        save_wav(speech_like_audio(audio_seconds, 16000, seed=0), speech, 16000)
    checkpoint = os.path.join(folder, "wav2lip_recipe.pth")
    if not os.path.isfile(checkpoint):
        from checkpoints import save_checkpoint
        from models import Wav2Lip
        from synthetic import recipe_state_dict
        model = Wav2Lip()
        model.load_state_dict(recipe_state_dict(model))
        save_checkpoint(checkpoint, model)
    return video, speech, checkpoint


def child(kind, video, speech, checkpoint, outfile, precision, options="[]"):
    """Run once in this process; print JSON with seconds, stage seconds and peak RSS.

    options: JSON list of extra inference.py flags; "--detect" among them means face
    detection (no --box) with the recipe S3FD weights of the checkpoint's folder."""
    options = json.loads(options)
    detect = "--detect" in options
    options = [o for o in options if o != "--detect"]
    if detect:
        from face_detection import api
        weights = os.path.join(os.path.dirname(checkpoint), "s3fd_recipe.pth")
        api.default_weights_path = lambda: weights
    start = time.perf_counter()
    box = [] if detect else ["--box", *map(str, BOX)]
    if kind == "reference":
        from benchmarks.reference_inference import main
        main(["--checkpoint_path", checkpoint, "--face", video, "--audio", speech, "--outfile", outfile, *box])
        stats = {}
    else:
        from inference import main
        stats = main(["--checkpoint_path", checkpoint, "--face", video, "--audio", speech, "--outfile", outfile,
                      *box, "--precision", precision, "--quiet", *options])
    seconds = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps({"seconds": seconds, "rss_mb": rss_mb,
                                  "frames": stats.get("frames"), "stages": stats.get("stage_seconds", {})}))


def timed_run(kind, video, speech, checkpoint, outfile, precision="fp32", options=()):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, video, speech, checkpoint, outfile, precision,
           json.dumps(list(options))]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{result.stderr[-2000:]}")
    line = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def cached_rects(folder):
    """{run folder: rects array} of the box cache entries under `folder` (one run per sub-folder)."""
    out = {}
    for name in sorted(os.listdir(folder)):
        entries = [f for f in os.listdir(os.path.join(folder, name)) if f.endswith(".npz")]
        if entries:
            with np.load(os.path.join(folder, name, entries[0])) as data:
                out[name] = data["rects"].astype(np.float64)
    return out


def count_frames(path):
    from videoio import VideoReader
    with VideoReader(path) as video:
        return sum(1 for _ in video)


def generator_throughput(checkpoint, frames=64):
    """Frames per second of the generator alone: the reference's one 128-batch vs our runner."""
    import torch
    from checkpoints import load_model
    from lipsync import GeneratorRunner
    from models import Wav2Lip
    rng = np.random.RandomState(0)
    faces = rng.randint(0, 256, (frames, 96, 96, 6)).astype(np.uint8)
    mels = rng.uniform(-4, 4, (frames, 80, 16)).astype(np.float32)
    model = Wav2Lip()
    load_model(model, checkpoint)
    model.eval()
    out = {}
    with torch.no_grad():
        x = torch.FloatTensor(np.transpose(faces / 255., (0, 3, 1, 2)))
        a = torch.FloatTensor(np.transpose(mels.reshape(frames, 80, 16, 1), (0, 3, 1, 2)))
        model(a, x)  # warm-up: oneDNN builds its kernels on the first call of a shape
        start = time.perf_counter()
        model(a, x)
        out["reference (one batch)"] = frames / (time.perf_counter() - start)
    for precision in ("fp32", "bf16"):
        runner = GeneratorRunner(model, torch.device("cpu"), precision)
        runner(mels[:16], list(faces[:16]))  # warm-up
        start = time.perf_counter()
        runner(mels, list(faces))
        out[f"ours {precision}"] = frames / (time.perf_counter() - start)
    return out


def psnr_bf16(video, speech, checkpoint, limit=None):
    """PSNR of bf16 frames against fp32 frames, over whole frames and over the face box."""
    import torch
    import audio
    from checkpoints import load_model
    from lipsync import GeneratorRunner
    from models import Wav2Lip
    from streaming import FaceBoxes, FaceSource, dub
    mel = audio.melspectrogram(audio.load_wav(speech, 16000))
    outputs = {}
    for precision in ("fp32", "bf16"):
        model = Wav2Lip()
        load_model(model, checkpoint)
        runner = GeneratorRunner(model, torch.device("cpu"), precision)
        frames = dub(FaceSource(video), mel, runner, FaceBoxes(box=BOX))
        outputs[precision] = [f for _, f in zip(range(limit or 10**9), frames)]
    y1, y2, x1, x2 = BOX
    whole = np.mean([np.mean((a.astype(np.float64) - b) ** 2) for a, b in zip(outputs["bf16"], outputs["fp32"])])
    face = np.mean([np.mean((a[y1:y2, x1:x2].astype(np.float64) - b[y1:y2, x1:x2]) ** 2)
                    for a, b in zip(outputs["bf16"], outputs["fp32"])])
    return {"frames": len(outputs["fp32"]), "psnr_whole_db": 10 * np.log10(255 ** 2 / whole),
            "psnr_face_db": 10 * np.log10(255 ** 2 / face)}


def report(name, result, n_frames):
    stages = ", ".join(f"{k} {v:.1f}" for k, v in sorted(result["stages"].items()))
    print(f"{name:<28} {result['seconds']:7.1f} s  {n_frames / result['seconds']:6.1f} frames/s  "
          f"peak RSS {result['rss_mb']:6.0f} MB" + (f"  [stage s: {stages}]" if stages else ""))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default=os.path.join(ROOT, "benchmarks", "out"))
    p.add_argument("--runs", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--skip_reference", action="store_true")
    p.add_argument("--repeat", type=int, default=1, help="runs of each kind, alternated; the median is reported")
    p.add_argument("--long", type=int, nargs="?", const=10, default=0, metavar="FACTOR",
                   help="also a FACTOR times (default 10) longer video and audio (RSS flatness)")
    p.add_argument("--psnr_frames", type=int, default=0, help="frames for the bf16 PSNR (0: all)")
    p.add_argument("--skip_psnr", action="store_true")
    p.add_argument("--detect", action="store_true",
                   help="detect faces (S3FD, recipe weights) instead of --box, plus the opt-in detection speed-ups")
    p.add_argument("--detect_bound", action="store_true",
                   help="only print S3FD's GFLOP per frame, this CPU's convolution speed and the floor they put "
                        "under detection with the same arithmetic")
    args = p.parse_args(argv)
    if args.detect_bound:
        return detection_bound(185, 0, 0)

    video, speech, checkpoint = make_inputs(args.workdir, 185, 14.2)
    if args.detect:
        return detection_runs(args, video, speech, checkpoint)
    print(f"input: {WIDTH}x{HEIGHT} {FPS} fps, 185 frames (7.4 s), 14.2 s audio; --box {' '.join(map(str, BOX))}")
    # Runs alternate (reference, fp32, bf16, reference, ...) so that a shared machine's slow
    # spells fall on every kind alike; each kind reports its median run.
    kinds = ([] if args.skip_reference else ["reference"]) + args.runs
    runs = {kind: [] for kind in kinds}
    for _ in range(args.repeat):
        for kind in kinds:
            out = os.path.join(args.workdir, "ref.mp4" if kind == "reference" else f"ours_{kind}.mp4")
            runs[kind].append(timed_run("reference" if kind == "reference" else "ours", video, speech,
                                        checkpoint, out, kind))
    results = {kind: sorted(r, key=lambda x: x["seconds"])[len(r) // 2] for kind, r in runs.items()}
    for kind in kinds:
        r = results[kind]
        n_frames = count_frames(os.path.join(args.workdir, "ref.mp4")) if kind == "reference" else r["frames"]
        name = "reference (in memory)" if kind == "reference" else f"inference.py {kind}"
        report(name, r, n_frames)
        if args.repeat > 1:
            seconds = ", ".join(f"{x['seconds']:.1f}" for x in runs[kind])
            print(f"{'':28} runs: {seconds} s")
        if kind != "reference" and "reference" in results:
            print(f"{'':28} speed-up vs reference: {results['reference']['seconds'] / r['seconds']:.2f}x")
    if args.long:
        long_video, long_speech, _ = make_inputs(args.workdir, 185 * args.long, 14.2 * args.long,
                                                 tag=f"_x{args.long}")
        for precision in args.runs:
            r = timed_run("ours", long_video, long_speech, checkpoint, os.path.join(args.workdir, "long.mp4"),
                          precision)
            report(f"inference.py {precision}, {args.long}x longer", r, r["frames"])
    print("generator alone (frames/s):", ", ".join(f"{k} {v:.1f}" for k, v in generator_throughput(checkpoint).items()))
    if not args.skip_psnr:
        psnr = psnr_bf16(video, speech, checkpoint, args.psnr_frames or None)
        print(f"bf16 vs fp32 over {psnr['frames']} frames: PSNR {psnr['psnr_whole_db']:.1f} dB whole frame, "
              f"{psnr['psnr_face_db']:.1f} dB in the face box")


def s3fd_gflop(width, height):
    """GFLOP (2 x multiply-adds of the convolutions) of one S3FD pass on a width x height frame."""
    import torch
    from face_detection import S3FD
    total = [0]

    def count(module, inputs, output):
        kh, kw = module.kernel_size
        total[0] += 2 * output.numel() * module.in_channels // module.groups * kh * kw

    model = S3FD()
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(count)
    with torch.no_grad():
        model(torch.zeros(1, 3, height, width))
    return total[0] / 1e9


def conv_gflops(repeat=5):
    """GFLOP/s of this machine's best case for S3FD: a 3x3 256->256 convolution on a 150x120 map
    (VGG's conv3 block), channels_last, all CPU threads, best of `repeat`."""
    import torch
    x = torch.randn(1, 256, 120, 150).contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3).contiguous(memory_format=torch.channels_last)
    best = float("inf")
    with torch.no_grad():
        torch.nn.functional.conv2d(x, w, padding=1)
        for _ in range(repeat):
            start = time.perf_counter()
            torch.nn.functional.conv2d(x, w, padding=1)
            best = min(best, time.perf_counter() - start)
    return 2 * 256 * 256 * 9 * 120 * 150 / best / 1e9


def detection_bound(n_frames, generate_seconds, reference_seconds):
    """Print the floor the same arithmetic puts under detection on this machine."""
    gflop = s3fd_gflop(WIDTH, HEIGHT)
    speed = conv_gflops()
    floor = n_frames * gflop / speed
    print(f"S3FD: {gflop:.0f} GFLOP per {WIDTH}x{HEIGHT} frame; this CPU's best 3x3 convolution: {speed:.0f} GFLOP/s, "
          f"so detecting {n_frames} frames takes at least {floor:.0f} s with the same arithmetic")
    if generate_seconds and reference_seconds:
        total = floor + generate_seconds
        print(f"{'':28} floor end to end (detection at that speed + the measured rest, {generate_seconds:.0f} s): "
              f"{total:.0f} s = {reference_seconds / total:.2f}x the reference at best")


def detection_runs(args, video, speech, checkpoint):
    """End to end with face detection: the reference, ours fp32 / bf16, and the opt-in speed-ups."""
    import shutil
    import torch
    from face_detection import S3FD
    from synthetic import recipe_state_dict
    weights = os.path.join(args.workdir, "s3fd_recipe.pth")
    if not os.path.isfile(weights):
        torch.save(recipe_state_dict(S3FD()), weights)
    cache = os.path.join(args.workdir, "detect_cache")
    shutil.rmtree(cache, ignore_errors=True)
    print(f"input: {WIDTH}x{HEIGHT} {FPS} fps, 185 frames (7.4 s), 14.2 s audio; S3FD face detection on every frame "
          f"(recipe weights), detection batch 16")
    runs = [("reference", "fp32", []), ("full", "fp32", []), ("bf16", "bf16", []),
            ("every5", "fp32", ["--detect_every", "5"]), ("side320", "fp32", ["--detect_max_side", "320"])]
    if args.skip_reference:
        runs = runs[1:]
    names = {"reference": "reference (in memory)", "full": "inference.py fp32", "bf16": "inference.py bf16",
             "every5": "fp32 --detect_every 5", "side320": "fp32 --detect_max_side 320"}
    results = {}
    for name, precision, extra in runs:
        if name == "bf16" and "bf16" not in args.runs:
            continue
        kind = "reference" if name == "reference" else "ours"
        options = ["--detect"] + ([] if kind == "reference" else ["--box_cache", os.path.join(cache, name)]) + extra
        out = os.path.join(args.workdir, f"detect_{name}.mp4")
        results[name] = r = timed_run(kind, video, speech, checkpoint, out, precision, options)
        frames = count_frames(out) if kind == "reference" else r["frames"]
        report(names[name], r, frames)
        if kind != "reference" and "reference" in results:
            print(f"{'':28} speed-up vs reference: {results['reference']['seconds'] / r['seconds']:.2f}x")
    full, reference = results.get("full", {}), results.get("reference", {})
    detection_bound(185, full.get("seconds", 0) - full.get("stages", {}).get("detect", 0) if full else 0,
                    reference.get("seconds"))
    rects = cached_rects(cache)
    if "full" in rects:
        for name, found in rects.items():
            if name == "full":
                continue
            error = np.abs(found[:len(rects["full"])] - rects["full"][:len(found)])
            print(f"face rects of {names[name]} against full detection: mean {error.mean():.2f} px, "
                  f"max {error.max():.0f} px over {len(found)} frames")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:9])
    else:
        main()
