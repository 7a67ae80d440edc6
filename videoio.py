"""Video and audio files: streaming frame reads, ffmpeg calls, atomic H.264 writes.

ffmpeg is the system one when present, else the binary shipped in the
imageio-ffmpeg wheel. It is always called with an argument list (never a shell
string), and a failure raises a UserError carrying the end of its stderr.
"""
import os
import shutil
import subprocess
import tempfile

import numpy as np

from cli import UserError
from fileio import publish, temp_path_beside

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def ffmpeg_exe():
    system = shutil.which("ffmpeg")
    if system:
        return system
    try:
        import imageio_ffmpeg
    except ImportError:
        raise UserError("ffmpeg not found: install it, or `pip install imageio-ffmpeg`") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def _stderr_tail(text, lines=3):
    tail = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(tail) if tail else "no message"


def run_ffmpeg(args, what):
    """Run ffmpeg with `args` (a list); UserError naming `what` on failure."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *map(str, args)]
    result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise UserError(f"ffmpeg failed {what}: {_stderr_tail(result.stderr)}")


def extract_audio(src, dst_wav, sample_rate=16000):
    """Decode the audio of any ffmpeg-readable file to mono 16-bit PCM WAV at sample_rate."""
    if not os.path.isfile(src):
        raise UserError(f"{src}: file not found")
    run_ffmpeg(["-i", src, "-vn", "-ac", "1", "-ar", sample_rate, "-acodec", "pcm_s16le",
                "-f", "wav", dst_wav], f"to read the audio of {src}")


def jpeg_frames(path, fps=None, qscale=None, chunk_bytes=1 << 20):
    """Frames of a video as ffmpeg writes them to JPEG files, decoded: BGR uint8, one at a time.

    The published evaluation scripts run `ffmpeg -i VIDEO -threads 1 -f image2 %06d.jpg`
    and read the files back with cv2; the same encoder writes here to a pipe
    instead of the disk, so the pixels are those the paper scored. `fps`
    resamples the video's frame rate as `-r` does; `qscale` sets the JPEG quality as `-qscale:v`
    (syncnet_python's face-track pipeline uses 2; unset is ffmpeg's default, as the LSE scripts).
    UserError if ffmpeg fails.
    """
    import cv2
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"{path}: file not found")
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", path, "-threads", "1"]
    if fps is not None:
        args += ["-r", repr(float(fps))]
    if qscale is not None:
        args += ["-qscale:v", str(qscale)]
    args += ["-an", "-f", "image2pipe", "-c:v", "mjpeg", "-"]
    with tempfile.TemporaryFile(mode="w+") as stderr:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr)
        try:
            buffer = b""
            while chunk := process.stdout.read(chunk_bytes):
                buffer += chunk
                # ffmpeg's JPEGs carry no thumbnails, and 0xFF in entropy-coded data is stuffed
                # with 0x00, so each image ends at the first end-of-image marker after its start.
                while (end := buffer.find(b"\xff\xd9", 2)) != -1:
                    image = cv2.imdecode(np.frombuffer(buffer[:end + 2], np.uint8), cv2.IMREAD_COLOR)
                    buffer = buffer[end + 2:]
                    if image is None:
                        raise UserError(f"{path}: ffmpeg produced an unreadable frame")
                    yield image
        finally:
            process.stdout.close()
            if process.poll() is None:
                process.kill()
            returncode = process.wait()
        if returncode != 0:
            stderr.seek(0)
            raise UserError(f"{path}: ffmpeg cannot read the video frames: {_stderr_tail(stderr.read())}")


def is_image_path(path):
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


class VideoReader:
    """Frames of a video file, decoded one at a time (memory does not grow with length).

        with VideoReader("clip.mp4") as video:
            for frame in video:   # BGR uint8 (H, W, 3)
                ...
    """

    def __init__(self, path):
        import cv2
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise UserError(f"{self.path}: file not found")
        self._capture = cv2.VideoCapture(self.path)
        if not self._capture.isOpened():
            raise UserError(f"{self.path}: cannot open as a video")
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS)) or 0.0
        self.frame_count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))

    def __iter__(self):
        while True:
            ok, frame = self._capture.read()
            if not ok:
                return
            yield frame

    def close(self):
        self._capture.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_image(path):
    """A BGR uint8 image, or a UserError naming the file."""
    import cv2
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"{path}: file not found")
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{path}: cannot read as an image")
    return image


class VideoWriter:
    """Encode BGR frames to H.264 (yuv420p) MP4 through an ffmpeg pipe, optionally muxing audio.

    Writes to a temporary file beside `path` and renames it on a clean close;
    on error (or `abort()`) the temporary file is removed and `path` is untouched.
    `nice` > 0 lowers the encoder's scheduling priority (inference.py uses 10).

        with VideoWriter("out.mp4", fps=25, width=640, height=480, audio_path="a.wav") as out:
            out.write(frame)
    """

    def __init__(self, path, fps, width, height, audio_path=None, crf=18, preset="medium", nice=0):
        self.path = os.path.abspath(os.fspath(path))
        self.width, self.height = int(width), int(height)
        self._tmp = temp_path_beside(self.path, suffix=".mp4")
        self._stderr = tempfile.TemporaryFile(mode="w+")
        args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{self.width}x{self.height}",
                "-r", repr(float(fps)), "-i", "-"]
        if audio_path is not None:
            args += ["-i", os.fspath(audio_path), "-map", "0:v:0", "-map", "1:a:0",
                     "-c:a", "aac", "-b:a", "128k"]
        # yuv420p needs even sizes: pad by one pixel rather than resample.
        args += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-preset", preset,
                 "-crf", str(crf), "-pix_fmt", "yuv420p", "-movflags", "+faststart",
                 "-f", "mp4", self._tmp]
        self._process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=self._stderr)
        if nice and hasattr(os, "setpriority"):
            # Let the encoder take the cycles the network leaves: as an equal, it preempts one of
            # the network's threads, and the other waits for it at every layer.
            try:
                niceness = min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice)  # relative, as nice(1)
                os.setpriority(os.PRIO_PROCESS, self._process.pid, niceness)
            except OSError:  # already gone: close() reports why
                pass
        self.frames_written = 0

    def write(self, frame):
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame of shape {frame.shape} {frame.dtype}, "
                             f"expected ({self.height}, {self.width}, 3) uint8")
        try:
            self._process.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            self._fail()
        self.frames_written += 1

    def _fail(self):
        self._process.wait()
        self._stderr.seek(0)
        message = _stderr_tail(self._stderr.read())
        self.abort()
        raise UserError(f"ffmpeg failed to write {self.path}: {message}")

    def close(self):
        """Finish encoding and move the file into place."""
        if self._process.stdin and not self._process.stdin.closed:
            try:
                self._process.stdin.close()
            except BrokenPipeError:
                pass
        if self._process.wait() != 0:
            self._fail()
        self._stderr.close()
        publish(self._tmp, self.path)

    def abort(self):
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        if os.path.exists(self._tmp):
            os.remove(self._tmp)
        if not self._stderr.closed:
            self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def live_output_format(out):
    """ffmpeg's -f for a live output URL (None: ffmpeg guesses from the name)."""
    scheme = out.split("://", 1)[0].lower() if "://" in out else ""
    return {"rtmp": "flv", "rtmps": "flv", "udp": "mpegts", "srt": "mpegts", "tcp": "mpegts",
            "rtp": "rtp_mpegts", "rtsp": "rtsp"}.get(scheme)


class LiveWriter:
    """Frames and their audio (live.LiveFrame) to an MP4 file or an ffmpeg output URL, as they come.

    ffmpeg reads raw BGR frames on stdin and 16-bit PCM on a second pipe; a thread
    feeds each, so neither blocks the other (or the caller, up to a few dozen frames).
    H.264 (veryfast, zerolatency) and AAC. A file is written beside `out` and renamed
    on a clean close (nothing on error); a URL (rtmp://, srt://, udp://, ...) is live.
    """

    def __init__(self, out, fps, width, height, out_format=None, sample_rate=16000, nice=10, queue_frames=32):
        import queue
        import threading
        self.out, self.is_url = os.fspath(out), "://" in os.fspath(out)
        self.width, self.height = int(width), int(height)
        self.frames_written = 0
        self._tmp = None if self.is_url else temp_path_beside(os.path.abspath(self.out), suffix=".mp4")
        target = self.out if self.is_url else self._tmp
        out_format = out_format or (live_output_format(self.out) if self.is_url else "mp4")
        audio_read, audio_write = os.pipe()
        args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{self.width}x{self.height}",
                "-r", repr(float(fps)), "-i", "pipe:0",
                "-f", "s16le", "-ar", str(sample_rate), "-ac", "1", "-i", f"pipe:{audio_read}",
                "-map", "0:v:0", "-map", "1:a:0",
                "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-preset", "veryfast",
                "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k"]
        if not self.is_url:
            args += ["-movflags", "+faststart"]
        args += (["-f", out_format] if out_format else []) + [target]
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._stderr_text = ""
        self._process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=self._stderr, pass_fds=(audio_read,))
        os.close(audio_read)
        if nice and hasattr(os, "setpriority"):
            try:
                os.setpriority(os.PRIO_PROCESS, self._process.pid,
                               min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice))
            except OSError:
                pass
        self._pipes = [self._process.stdin, os.fdopen(audio_write, "wb")]
        self._queues = [queue.Queue(maxsize=queue_frames), queue.Queue(maxsize=queue_frames)]
        self._errors = []
        self._threads = [threading.Thread(target=self._feed, args=(q, pipe), daemon=True)
                         for q, pipe in zip(self._queues, self._pipes)]
        for thread in self._threads:
            thread.start()

    def _feed(self, items, pipe):
        broken = False
        while (data := items.get()) is not None:
            if broken:
                continue
            try:
                pipe.write(data)
            except (BrokenPipeError, OSError) as e:
                self._errors.append(e)
                broken = True
        try:
            pipe.close()
        except OSError:
            pass

    def write(self, image, audio):
        """One frame (H, W, 3) uint8 BGR and the float32 samples of its time slot."""
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise ValueError(f"frame of shape {image.shape} {image.dtype}, "
                             f"expected ({self.height}, {self.width}, 3) uint8")
        if self._errors:
            self._fail()
        pcm = np.clip(np.rint(np.asarray(audio, np.float32) * 32768), -32768, 32767).astype("<i2")
        self._queues[0].put(np.ascontiguousarray(image).tobytes())
        self._queues[1].put(pcm.tobytes())
        self.frames_written += 1

    def write_all(self, frames):
        for frame in frames:
            self.write(frame.image, frame.audio)

    def _stop_feeding(self):
        for q in self._queues:
            q.put(None)
        for thread in self._threads:
            thread.join()

    def _fail(self):
        self.abort()  # reads ffmpeg's last words into self._stderr_text
        raise UserError(f"ffmpeg failed to write {self.out}: {self._stderr_text or 'broken pipe'}")

    def close(self):
        self._stop_feeding()
        code = self._process.wait()
        self._stderr.seek(0)
        self._stderr_text = _stderr_tail(self._stderr.read())
        if code != 0 or self._errors:
            self._fail()
        self._stderr.close()
        if self._tmp:
            publish(self._tmp, os.path.abspath(self.out))
            self._tmp = None

    def abort(self):
        if self._process.poll() is None:
            self._process.kill()
        if any(t.is_alive() for t in self._threads):
            self._stop_feeding()
        self._process.wait()
        if self._tmp and os.path.exists(self._tmp):
            os.remove(self._tmp)
        self._tmp = None
        if not self._stderr.closed:
            self._stderr.seek(0)
            self._stderr_text = _stderr_tail(self._stderr.read())
            self._stderr.close()
