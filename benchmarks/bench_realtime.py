"""Real-time lip sync on this machine: sustained frames/s and latency (audio sample in -> frame out).

    python benchmarks/bench_realtime.py                           # 96, fp32 and bf16, 1 and 2 sessions
    python benchmarks/bench_realtime.py --img_size 288 --runs bf16:1
    python benchmarks/bench_realtime.py --seconds 20 --runs fp32:1 bf16:1 bf16:2 --encode

A synthetic 600x480 face video (2 s, 25 fps) is prepared as an avatar with --box;
speech-like audio is fed to each session in 20 ms chunks paced at real time, as a
microphone or a TTS would, through realtime.py's own loop (realtime.drive), and
every frame's latency is the time from the arrival of its first audio sample to
the frame leaving the generator (and the paste). The floor is the window's
lookahead (212.5 ms at 25 fps): a frame cannot be made before the audio it shows
has arrived. A run sustains real time when the frames/s over the run match the
video's 25 and the latency does not grow; --encode also H.264-encodes the output
(realtime.py run's writer) in the same process. Sessions share one engine (one
model, one store of the avatar's encoded faces), as realtime.py serve does.
"""
import argparse
import os
import sys
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.bench_hd import sized_checkpoint  # noqa: E402
from benchmarks.bench_inference import BOX, make_inputs  # noqa: E402


def prepare(folder, img_size):
    import realtime
    video, speech, _ = make_inputs(folder, video_frames=50, audio_seconds=30, tag="_live")
    avatar = os.path.join(folder, f"avatar_{img_size}")
    realtime.main(["prepare", "--face", video, "--avatar", avatar, "--box", *map(str, BOX),
                   "--img_size", str(img_size), "--quiet"])
    return avatar, speech, sized_checkpoint(folder, img_size)


def one_run(avatar, checkpoint, speech, precision, sessions, seconds, encode, threads):
    import torch
    import realtime
    from audio import load_wav
    torch.set_num_threads(threads)
    fast = ["--fast"] if precision == "fast" else []
    precision = "fp32" if precision == "fast" else precision
    args = realtime.build_parser().parse_args(["run", "--avatar", avatar, "--checkpoint_path", checkpoint,
                                               "--audio", speech, "--precision", precision, "--quiet", *fast])
    engine = realtime.open_engine(args)
    wav = load_wav(speech, 16000)
    results = [None] * sessions

    def session_run(n):
        # Each session speaks its own part of the file, in 20 ms chunks at real time.
        start = int(n * 16000 * 3.7) % max(1, len(wav) - seconds * 16000)
        audio = wav[start:start + seconds * 16000]
        chunks = [audio[i:i + 320] for i in range(0, len(audio), 320)]
        feed = realtime.AudioFeed(chunks, rate=16000)
        figures = realtime.LiveFigures(engine.avatar.fps)
        writer = None
        if encode:
            from videoio import LiveWriter
            writer = LiveWriter(os.path.join(os.path.dirname(avatar), f"bench_{n}.mp4"), engine.avatar.fps,
                                engine.avatar.width, engine.avatar.height)
        emit = writer.write_all if writer else (lambda frames: None)
        began = time.perf_counter()
        realtime.drive(engine.session(), feed, emit, figures, idle_after=0.5)
        ended = time.perf_counter()
        if writer:
            writer.close()
        results[n] = (figures, ended - began)

    threads_ = [threading.Thread(target=session_run, args=(n,)) for n in range(sessions)]
    for t in threads_:
        t.start()
    for t in threads_:
        t.join()
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default=os.path.join(ROOT, "benchmarks", "out", "realtime"))
    p.add_argument("--img_size", type=int, choices=(96, 288), default=96)
    p.add_argument("--runs", nargs="+", default=["fp32:1", "fast:1", "bf16:1", "fp32:2", "fast:2", "bf16:2"],
                   help="precision:sessions pairs; precision fp32, bf16, fp16 (CUDA) or fast (fp32 --fast)")
    p.add_argument("--seconds", type=int, default=12, help="seconds of speech per session")
    p.add_argument("--warmup_seconds", type=float, default=2.0, help="frames of the first seconds not counted")
    p.add_argument("--encode", action="store_true", help="also encode the output to MP4 (as realtime.py run)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = p.parse_args(argv)
    import torch
    from live import lookahead_seconds
    avatar, speech, checkpoint = prepare(args.workdir, args.img_size)
    threads = args.threads or torch.get_num_threads()
    print(f"{args.img_size}x{args.img_size} generator, avatar 600x480 (50 frames), {args.seconds} s of speech per "
          f"session paced at real time in 20 ms chunks, {threads} threads; lookahead "
          f"{lookahead_seconds(25) * 1000:.1f} ms" + (", with H.264 encoding" if args.encode else ""))
    print("| run | sessions | frames/s per session (whole run) | latency p50 | p95 | max | real time |")
    print("|---|---|---|---|---|---|---|")
    for run in args.runs:
        precision, sessions = run.split(":")
        results = one_run(avatar, checkpoint, speech, precision, int(sessions), args.seconds, args.encode, threads)
        for n, (figures, wall) in enumerate(results):
            skip = int(args.warmup_seconds * 25)
            latencies = np.asarray(figures.latencies[skip:]) * 1000
            p50, p95, worst = np.percentile(latencies, [50, 95, 100])
            fps = figures.made / wall
            keeps_up = p95 <= lookahead_seconds(25) * 1000 + 100
            print(f"| {precision} | {sessions} (#{n + 1}) | {fps:.1f} | {p50:.0f} ms | {p95:.0f} ms | {worst:.0f} ms | "
                  f"{'yes' if keeps_up else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
