"""Real-time lip sync: prepare an avatar once, then make it speak audio as it arrives.

    python realtime.py prepare --face anna.mp4 --avatar avatars/anna [inference.py face options]
    python realtime.py run --avatar avatars/anna --checkpoint_path checkpoints/wav2lip_gan.pth \\
        --audio speech.wav [--out results/realtime.mp4] [--precision bf16]
    tts ... | python realtime.py run --avatar avatars/anna --checkpoint_path ... --audio - \\
        --out rtmp://localhost/live/anna           # 16-bit mono PCM at 16 kHz on stdin
    python realtime.py serve --avatar avatars/anna --checkpoint_path ... [--host 127.0.0.1] [--port 8010]

See README.md (Real time). In fp32 the frames equal inference.py's for the same
avatar options, audio and checkpoint.
"""
import argparse
import collections
import os
import queue
import sys
import threading
import time

import numpy as np

from cli import UserError, run_main

DEFAULT_OUT = "results/realtime.mp4"


def build_parser():
    from inference import add_device_arguments, add_face_arguments
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="command", required=True, metavar="{prepare,run,serve}")

    prepare = commands.add_parser("prepare", help="store a face video's frames, boxes and crops as an avatar")
    prepare.add_argument("--avatar", required=True, help="avatar folder to make (or reuse)")
    add_face_arguments(prepare)
    prepare.add_argument("--img_size", type=int, choices=(96, 288), default=96,
                         help="face size of the generator it will run with (96; 288 for HD checkpoints)")
    prepare.add_argument("--loop", choices=("forward", "pingpong"), default="forward",
                         help="frame order when speech outlasts the video: forward (i mod N, as "
                              "inference.py) or pingpong (forward then backward, no jump)")
    add_device_arguments(prepare)
    prepare.add_argument("--quiet", action="store_true", help="no progress bar")

    def add_engine_arguments(q):
        q.add_argument("--avatar", required=True, help="avatar folder made by realtime.py prepare")
        q.add_argument("--checkpoint_path", required=True, help="Wav2Lip generator checkpoint (.pth)")
        add_device_arguments(q)
        q.add_argument("--pass_size", type=int, default=None,
                       help="most faces per generator pass (default as inference.py)")
        q.add_argument("--fast", action="store_true",
                       help="fp32 with each BatchNorm folded into its convolution, channels_last: about "
                            "1.5x on CPUs without bf16 units, frames a grey level or two from exact fp32")

    run = commands.add_parser("run", help="lip-sync audio from a file or stdin, live, to an MP4 or a stream")
    add_engine_arguments(run)
    run.add_argument("--audio", required=True,
                     help="speech file (any format ffmpeg reads), or - for raw 16-bit little-endian "
                          "mono PCM on stdin")
    run.add_argument("--input_rate", type=int, default=16000, help="sample rate of the PCM on stdin (Hz)")
    run.add_argument("--out", default=DEFAULT_OUT,
                     help=f"output MP4 (default {DEFAULT_OUT}), or an ffmpeg output URL (rtmp://, srt://, "
                          "udp://, ...) for a live stream")
    run.add_argument("--out_format", default=None,
                     help="ffmpeg output format for --out (default: flv for rtmp, mpegts for udp/srt/tcp, "
                          "else from the name)")
    run.add_argument("--as_fast_as_possible", action="store_true",
                     help="feed an audio file as fast as frames are made, not at real time")
    run.add_argument("--chunk_ms", type=float, default=20.0, help="audio chunk fed at a time from a file (ms)")
    run.add_argument("--idle_after", type=float, default=0.5,
                     help="seconds without audio after which the utterance ends and the avatar's own "
                          "frames keep the output going (stdin)")
    run.add_argument("--quiet", action="store_true", help="no live figures")

    serve = commands.add_parser("serve", help="a local web page: microphone or audio file in, avatar out")
    add_engine_arguments(serve)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8010, help="port (default 8010)")
    serve.add_argument("--max_sessions", type=int, default=2, help="most simultaneous sessions (default 2)")
    serve.add_argument("--jpeg_quality", type=int, default=80, help="JPEG quality of the frames sent (default 80)")
    return p


def check_engine_args(args):
    if args.pass_size is not None and args.pass_size < 1:
        raise UserError(f"--pass_size must be at least 1, got {args.pass_size}")
    if not os.path.isfile(args.checkpoint_path):
        raise UserError(f"{args.checkpoint_path}: file not found (--checkpoint_path)")


def open_engine(args):
    """Avatar + generator (inference.build_runner) for run and serve; UserErrors for a bad pair."""
    from avatar import Avatar
    from devices import get_device
    from inference import build_runner, reuse_freed_memory
    from live import Engine
    check_engine_args(args)
    avatar = Avatar(args.avatar)
    device = get_device(args.device)
    if args.precision == "fp16" and device.type != "cuda":
        raise UserError(f"--precision fp16 needs a CUDA device (got {device}); use bf16 on CPU")
    reuse_freed_memory()
    runner = build_runner(args.checkpoint_path, device, args.precision, 128, args.pass_size,
                          fold=True if args.fast else None)
    runner.exact_lone_faces = False  # frames come one at a time: reuse stored faces (see lipsync)
    engine = Engine(avatar, runner)
    engine.warm_up(progress=not getattr(args, "quiet", False))
    return engine


def prepare(args):
    from avatar import prepare_avatar
    from devices import get_device
    from inference import check_face_args
    check_face_args(args)
    device = get_device(args.device)
    if args.precision == "fp16" and device.type != "cuda":
        raise UserError(f"--precision fp16 needs a CUDA device (got {device}); use bf16 on CPU")
    existed = os.path.isfile(os.path.join(args.avatar, "avatar.json"))
    avatar = prepare_avatar(args.avatar, args, device, img_size=args.img_size, loop=args.loop,
                            progress=not args.quiet)
    if not args.quiet:
        print(("reused " if existed else "prepared ") + repr(avatar))
    return avatar


def file_chunks(path, chunk_ms, workdir):
    """float32 16 kHz chunks of an audio file (UserError if unreadable or empty)."""
    from inference import load_speech
    wav = load_speech(path, workdir)
    step = max(1, int(round(chunk_ms * 16)))
    return [wav[i:i + step] for i in range(0, len(wav), step)]


def stdin_chunks(stream, chunk_bytes=640):
    """int16 chunks of raw little-endian PCM from a binary stream, as they arrive (20 ms at 16 kHz)."""
    leftover = b""
    while True:
        data = stream.read1(chunk_bytes) if hasattr(stream, "read1") else stream.read(chunk_bytes)
        if not data:
            return
        data = leftover + data
        usable = len(data) - len(data) % 2
        leftover = data[usable:]
        if usable:
            yield np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)


class AudioFeed:
    """Chunks from a source, delivered through a queue by a thread: paced at real time (a file
    played live) or as they come (stdin, or as fast as possible). Each item is
    (chunk, wall time it arrived); None ends the feed."""

    def __init__(self, chunks, rate=None):
        self.items = queue.Queue()
        self.error = None
        self._thread = threading.Thread(target=self._run, args=(chunks, rate), daemon=True)
        self._thread.start()

    def _run(self, chunks, rate):
        try:
            start, fed = time.perf_counter(), 0
            for chunk in chunks:
                if rate:  # a file played live: chunk n arrives when its first sample is due
                    delay = start + fed / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                fed += len(chunk)
                self.items.put((chunk, time.perf_counter()))
        except BaseException as e:  # re-raised by the consumer
            self.error = e
        finally:
            self.items.put(None)


class LiveFigures:
    """Frames/s and latency (audio sample in -> frame out) of a live run, for the status line."""

    def __init__(self, fps, sample_rate=16000):
        self.fps, self.rate = fps, sample_rate
        self.arrivals = collections.deque()  # (timeline sample after a chunk, wall time), not yet passed
        self.latencies, self.made = [], 0
        self.start = None
        self.idle = 0

    def arrived(self, end_sample, wall):
        if self.start is None:
            self.start = wall
        self.arrivals.append((end_sample, wall))

    def made_frames(self, frames, wall):
        """Latency of each lip-synced frame: from the arrival of its first sample to `wall`.

        Frames come in timeline order, so chunks that ended before a frame's first sample
        are dropped: the arrivals kept stay few, however long the run."""
        for frame in frames:
            self.made += 1
            if not frame.synced:
                self.idle += 1
                continue
            sample = int(round(frame.index * self.rate / self.fps))
            while self.arrivals and self.arrivals[0][0] <= sample:
                self.arrivals.popleft()
            if self.arrivals:
                self.latencies.append(wall - self.arrivals[0][1])

    def line(self, now):
        elapsed = max(1e-9, now - (self.start or now))
        text = f"{self.made} frames, {self.made / elapsed:.1f} frames/s"
        if self.latencies:
            p50, p95 = np.percentile(np.asarray(self.latencies) * 1000, [50, 95])
            text += f", latency p50 {p50:.0f} ms p95 {p95:.0f} ms"
        return text + (f", {self.idle} idle frames" if self.idle else "")


def drive(session, feed, emit, figures, idle_after, show=False):
    """Push the feed's chunks into the live session until the feed ends, handing every frame
    made to emit(frames); when no chunk comes for `idle_after` seconds, the avatar's own
    frames keep the timeline at the wall clock. Each round takes all the chunks waiting, so
    a slow generator works on larger batches instead of falling further behind."""
    shown = 0.0
    while True:
        try:
            item = feed.items.get(timeout=idle_after)
        except queue.Empty:  # no speech for a while: own frames keep the output's rate
            if figures.start is not None:
                frames = session.idle_until(time.perf_counter() - figures.start)
                figures.made_frames(frames, time.perf_counter())
                emit(frames)
            continue
        if item is None:
            break
        batch, ended = [item], False
        while True:
            try:
                item = feed.items.get_nowait()
            except queue.Empty:
                break
            if item is None:
                ended = True
                break
            batch.append(item)
        position = session.audio_samples
        for chunk, wall in batch:
            position += len(chunk) * 16000 / session.sample_rate
            figures.arrived(position, wall)
        frames = session.push(np.concatenate([chunk for chunk, _ in batch]))
        figures.made_frames(frames, time.perf_counter())
        emit(frames)
        if ended:
            break
        if show and time.perf_counter() - shown > 1:
            shown = time.perf_counter()
            print("\r" + figures.line(shown), end="", file=sys.stderr, flush=True)
    if feed.error is not None:
        raise feed.error
    frames = session.end_utterance()
    figures.made_frames(frames, time.perf_counter())
    emit(frames)


def run(args):
    import tempfile
    from live import lookahead_seconds
    from videoio import LiveWriter
    if args.chunk_ms <= 0 or args.idle_after <= 0 or args.input_rate <= 0:
        raise UserError("--chunk_ms, --idle_after and --input_rate must be positive")
    if args.audio != "-" and not os.path.isfile(args.audio):
        raise UserError(f"{args.audio}: file not found (--audio)")
    engine = open_engine(args)
    avatar = engine.avatar
    with tempfile.TemporaryDirectory(prefix="wav2lip-live-") as workdir:
        if args.audio == "-":
            session = engine.session(sample_rate=args.input_rate)
            feed = AudioFeed(stdin_chunks(sys.stdin.buffer))
        else:
            session = engine.session()
            chunks = file_chunks(args.audio, args.chunk_ms, workdir)
            feed = AudioFeed(chunks, rate=None if args.as_fast_as_possible else 16000)
        figures = LiveFigures(avatar.fps)
        writer = LiveWriter(args.out, avatar.fps, avatar.width, avatar.height, out_format=args.out_format)
        if not args.quiet:
            print(f"{avatar!r}; lookahead {lookahead_seconds(avatar.fps) * 1000:.1f} ms", file=sys.stderr)
        try:
            drive(session, feed, writer.write_all, figures, args.idle_after, show=not args.quiet)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    if not args.quiet:
        print("\r" + figures.line(time.perf_counter()), file=sys.stderr)
        print(f"wrote {args.out}: {writer.frames_written} frames at {avatar.fps:g} fps", file=sys.stderr)
    return {"frames": writer.frames_written, "latencies": figures.latencies, "idle_frames": figures.idle}


def serve(args):
    from live_server import serve_forever
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be 1..65535, got {args.port}")
    if args.max_sessions < 1:
        raise UserError(f"--max_sessions must be at least 1, got {args.max_sessions}")
    engine = open_engine(args)
    serve_forever(engine, host=args.host, port=args.port, max_sessions=args.max_sessions,
                  jpeg_quality=args.jpeg_quality)


def main(argv=None):
    args = build_parser().parse_args(argv)
    return {"prepare": prepare, "run": run, "serve": serve}[args.command](args)


if __name__ == "__main__":
    run_main(main)
