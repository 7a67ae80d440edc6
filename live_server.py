"""A local web page for live lip sync: microphone or audio file in, the avatar's frames out.

    python realtime.py serve --avatar avatars/anna --checkpoint_path ... [--host 127.0.0.1] [--port 8010]

then open http://127.0.0.1:8010/ . `make_app(engine)` gives the aiohttp application (tests
run it with aiohttp.test_utils), `serve_forever(engine)` runs it until Ctrl-C.

Protocol. GET / is the page (web/realtime.html); GET /ws is a WebSocket; nothing else is
served, and nothing a client sends names a file.

  client -> server
    text   {"type": "start", "sample_rate": 8000..192000, "format": "f32" | "s16",
            "image": "jpeg" | "png"}                 first message; image is optional (jpeg)
    binary raw mono PCM, little-endian float32 (f32) or int16 (s16), at sample_rate; at
           most MAX_CHUNK_SECONDS and max_message_bytes a message
    text   {"type": "end"}                           the utterance is over (a file's end)
    text   {"type": "stop"}, or closing              the session is over
  server -> client
    text   {"type": "ready", "fps", "width", "height", "sample_rate": 16000, "lookahead_ms"}
    binary one frame: 4-byte big-endian header length, the UTF-8 JSON header
           {"index", "timestamp", "synced", "samples", "image_bytes"}, the frame's audio
           (`samples` int16 little-endian at 16 kHz: its time slot of the timeline), the
           image (JPEG at --jpeg_quality, or lossless PNG)
    text   {"type": "ended", "frames": n, "synced": k, "sent": s, "dropped": d}
           after the frames of an utterance ("end"): the timeline's frames [0, n) are out,
           k of the utterance's were lip-synced (0 if none was open: no audio since the last
           "end", or the idle frames had ended it); s frames sent and d dropped so far
    text   {"type": "stats", "sent", "dropped", "queued", "backlog_ms"}   about every second
    text   {"type": "error", "message"}           then the server closes the session

Frame g of a session's timeline is due at g / fps seconds (its `timestamp`) and carries the
audio of that slot, so a page that plays each frame's audio at T0 + timestamp and draws the
image then keeps picture and sound in step (live.LiveSession). While audio arrives, frames
are lip-synced as soon as their mel windows are complete (live.lookahead_seconds after
their own time, plus the compute); when no audio has come for idle_after seconds, or right
after "end", the avatar's own frames follow at the frame rate of the wall clock, counted
from the session's first audio (LiveSession.idle_until), until audio comes again.

Limits, all per session unless said: a message over max_message_bytes (or with a byte
count that is not a whole number of samples, or over MAX_CHUNK_SECONDS of audio, or not
finite), bad JSON, an unknown type, audio before "start", a second "start", a sample
rate outside 8000..192000 or an unknown format ends that session with an "error" message
and a close; aiohttp itself closes (code 1009, no message) on one over 4 x
max_message_bytes. At most max_sessions connections at once: the next gets "server busy"
and is closed. Frames wait for a slow reader in a queue of queue_frames (2 s of frames):
beyond it the oldest are dropped and counted. Audio waiting for the generator is held to
MAX_BACKLOG_SECONDS: past that the server stops reading that socket until it catches up.
One worker thread, shared by all sessions, runs the generator (engine.lock serialises
the network anyway) and encodes the images. The server answers only requests addressed to
localhost / 127.0.0.1 / [::1] unless it listens on another address (DNS rebinding), and
WebSockets from pages of other origins are refused (another site open in the browser
cannot use the avatar). Browsers give the microphone only to https pages or to
localhost, so from another machine use the file input, or a tunnel to localhost.
"""
import asyncio
import collections
import json
import logging
import math
import os
import struct
import sys
import time

try:
    from aiohttp import WSCloseCode, WSMsgType, web
except ImportError as e:  # realtime.py serve prints this as one line
    from cli import UserError
    raise UserError(f"realtime.py serve needs aiohttp ({e}): pip install 'aiohttp>=3.9'") from e

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web", "realtime.html")
OUTPUT_RATE = 16000  # the timeline's audio (live.SAMPLE_RATE)
MIN_RATE, MAX_RATE = 8000, 192000
MAX_CHUNK_SECONDS = 2.0  # one binary message's audio, at most
MAX_BACKLOG_SECONDS = 5.0  # audio received but not yet given to the generator
QUEUE_SECONDS = 2.0  # frames waiting for a slow reader (queue_frames' default)
STATS_EVERY = 1.0
SAMPLE_FORMATS = {"f32": "<f4", "s16": "<i2"}
IMAGE_FORMATS = ("jpeg", "png")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")

log = logging.getLogger("live_server")


class ServerState:
    """What the application shares: the engine, the limits, the live sessions, the worker thread."""

    def __init__(self, engine, max_sessions, jpeg_quality, idle_after, max_message_bytes, queue_frames,
                 local_only):
        from concurrent.futures import ThreadPoolExecutor
        self.engine = engine
        self.max_sessions = int(max_sessions)
        self.jpeg_quality = int(jpeg_quality)
        self.idle_after = float(idle_after)
        self.max_message_bytes = int(max_message_bytes)
        self.queue_frames = int(queue_frames)
        self.local_only = local_only
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-generator")
        self.sessions = set()  # the Connections open now
        self.finished = collections.deque(maxlen=100)  # summaries of the last sessions (Connection.summary)
        self.refused = 0  # connections turned away: server busy


STATE = web.AppKey("live_state", ServerState)


class ProtocolError(Exception):
    """A client's mistake: told to it in an "error" message, then its session is closed."""

    def __init__(self, message, code=WSCloseCode.POLICY_VIOLATION):
        super().__init__(message)
        self.message, self.code = message, code


_FRAME, _CONTROL = "frame", "control"
_END, _IDLE = object(), object()


def encode_frame(frame, image_format="jpeg", jpeg_quality=80):
    """One frame message: 4-byte big-endian header length, JSON header, int16 audio, image."""
    import cv2
    import numpy as np
    if image_format == "png":
        ok, image = cv2.imencode(".png", frame.image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        ok, image = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise RuntimeError(f"could not encode frame {frame.index} as {image_format}")
    audio = np.clip(np.round(np.asarray(frame.audio, np.float32) * 32768), -32768, 32767).astype("<i2")
    header = json.dumps({"index": int(frame.index), "timestamp": round(float(frame.timestamp), 6),
                         "synced": bool(frame.synced), "samples": int(audio.size),
                         "image_bytes": int(image.size)}).encode()
    return b"".join((struct.pack(">I", len(header)), header, audio.tobytes(), image.tobytes()))


def decode_frame(message):
    """(header dict, int16 audio array, image bytes) of a frame message (for clients and tests)."""
    import numpy as np
    (length,) = struct.unpack(">I", message[:4])
    header = json.loads(message[4:4 + length].decode())
    audio_end = 4 + length + 2 * header["samples"]
    audio = np.frombuffer(message[4 + length:audio_end], "<i2")
    image = message[audio_end:audio_end + header["image_bytes"]]
    if len(image) != header["image_bytes"] or audio_end + header["image_bytes"] != len(message):
        raise ValueError("frame message of the wrong length")
    return header, audio, image


class Connection:
    """One WebSocket session: a reader (messages in), a producer (the engine, in the worker
    thread) and a sender (the bounded frame queue out), as three tasks."""

    def __init__(self, state, ws):
        self.state, self.ws = state, ws
        self.engine = state.engine
        self.fps = self.engine.avatar.fps
        self.session = None  # live.LiveSession, after "start"
        self.sample_rate, self.dtype, self.image_format = None, None, "jpeg"
        self.sample_bytes = 0
        self.t0 = None  # loop time of the first audio
        self.last_audio = -math.inf  # loop time of the latest chunk (-inf after "end": idle at once)
        self.inbox = collections.deque()  # PCM arrays, _END
        self.inbox_event = asyncio.Event()
        self.backlog = 0.0  # seconds of audio in the inbox
        self.room = asyncio.Event()
        self.outbox = collections.deque()  # (_FRAME, bytes) / (_CONTROL, dict)
        self.outbox_event = asyncio.Event()
        self.frames_queued = 0
        self.peak_queued = 0
        self.frames_made = self.frames_sent = self.synced_sent = self.dropped = 0
        self.utterance_synced = 0
        self.error = None

    def summary(self):
        return {"frames_made": self.frames_made, "frames_sent": self.frames_sent,
                "synced_sent": self.synced_sent, "dropped": self.dropped, "peak_queued": self.peak_queued,
                "error": self.error}

    async def run(self):
        tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._produce()),
                 asyncio.create_task(self._send())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        problem = None
        for task in done:
            exc = task.exception()
            if isinstance(exc, ProtocolError):
                problem = exc
            elif exc is not None and not isinstance(exc, ConnectionError):
                log.error("live session failed", exc_info=exc)
                problem = ProtocolError(f"internal error: {type(exc).__name__}: {exc}",
                                        WSCloseCode.INTERNAL_ERROR)
        code = WSCloseCode.OK
        if problem is not None:
            self.error, code = problem.message, problem.code
            if not self.ws.closed:
                try:
                    await asyncio.wait_for(self.ws.send_str(json.dumps({"type": "error",
                                                                        "message": problem.message})), 2)
                except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                    pass
        try:
            await asyncio.wait_for(self.ws.close(code=code), 3)
        except (asyncio.TimeoutError, ConnectionError, RuntimeError):
            pass

    # ---- reader -------------------------------------------------------------------------
    async def _read(self):
        while True:
            msg = await self.ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
            if msg.type == WSMsgType.ERROR:  # aiohttp closed it already (e.g. over max_msg_size)
                raise ProtocolError(f"bad message: {msg.data}", WSCloseCode.MESSAGE_TOO_BIG)
            if msg.type == WSMsgType.TEXT:
                if self._on_text(msg.data) == "stop":
                    return
            elif msg.type == WSMsgType.BINARY:
                await self._on_binary(msg.data)
            else:
                raise ProtocolError(f"unexpected message type {msg.type.name}")

    def _check_size(self, size):
        if size > self.state.max_message_bytes:
            raise ProtocolError(f"message too big: {size} bytes, the limit is {self.state.max_message_bytes}",
                                WSCloseCode.MESSAGE_TOO_BIG)

    def _on_text(self, text):
        self._check_size(len(text.encode("utf-8", "replace")))
        try:
            message = json.loads(text)
        except ValueError as e:
            raise ProtocolError(f"invalid JSON: {e}") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise ProtocolError('a text message must be a JSON object with a "type"')
        kind = message["type"]
        if kind == "start":
            self._start(message)
        elif kind == "end":
            if self.session is None:
                raise ProtocolError('"end" before "start"')
            self.last_audio = -math.inf  # no more audio: the avatar's own frames from now on
            self.inbox.append(_END)
            self.inbox_event.set()
        elif kind == "stop":
            return "stop"
        else:
            raise ProtocolError(f"unknown message type {kind[:40]!r} (start, end, stop)")

    def _start(self, message):
        if self.session is not None:
            raise ProtocolError('a second "start": one per session')
        rate, fmt = message.get("sample_rate"), message.get("format")
        image = message.get("image", "jpeg")
        if isinstance(rate, float) and rate.is_integer():
            rate = int(rate)
        if not isinstance(rate, int) or isinstance(rate, bool) or not MIN_RATE <= rate <= MAX_RATE:
            raise ProtocolError(f"bad sample_rate {str(rate)[:40]}: a whole number of Hz, {MIN_RATE}..{MAX_RATE}")
        if fmt not in SAMPLE_FORMATS:
            raise ProtocolError(f"bad format {str(fmt)[:40]!r}: f32 or s16")
        if image not in IMAGE_FORMATS:
            raise ProtocolError(f"bad image {str(image)[:40]!r}: jpeg or png")
        from live import lookahead_seconds
        self.sample_rate, self.dtype, self.image_format = rate, SAMPLE_FORMATS[fmt], image
        self.sample_bytes = 4 if fmt == "f32" else 2
        self.session = self.engine.session(sample_rate=rate)
        avatar = self.engine.avatar
        self._put_control({"type": "ready", "fps": self.fps, "width": avatar.width, "height": avatar.height,
                           "sample_rate": OUTPUT_RATE, "lookahead_ms": round(lookahead_seconds(self.fps) * 1000, 3)})

    async def _on_binary(self, data):
        import numpy as np
        self._check_size(len(data))
        if self.session is None:
            raise ProtocolError('audio before "start"')
        if len(data) % self.sample_bytes:
            raise ProtocolError(f"{len(data)} bytes is not a whole number of {self.sample_bytes}-byte samples")
        seconds = len(data) / self.sample_bytes / self.sample_rate
        if seconds > MAX_CHUNK_SECONDS:
            raise ProtocolError(f"a chunk of {seconds:.2f} s of audio: at most {MAX_CHUNK_SECONDS:g} s a message",
                                WSCloseCode.MESSAGE_TOO_BIG)
        if not data:
            return
        pcm = np.frombuffer(data, self.dtype)
        if pcm.dtype.kind == "f":
            if not np.isfinite(pcm).all():
                raise ProtocolError("audio with NaN or infinite samples")
            pcm = pcm.astype(np.float32)
        else:
            pcm = pcm.astype(np.int16)
        now = asyncio.get_running_loop().time()
        if self.t0 is None:
            self.t0 = now
        self.last_audio = now
        self.inbox.append(pcm)
        self.backlog += seconds
        self.inbox_event.set()
        while self.backlog > MAX_BACKLOG_SECONDS:  # the generator is behind: stop reading for a while
            self.room.clear()
            await self.room.wait()

    # ---- producer -----------------------------------------------------------------------
    async def _produce(self):
        loop = asyncio.get_running_loop()
        while True:
            item = await self._next_item(loop)
            was_speaking = self.session.speaking
            if item is _IDLE:
                frames = await self._work(self.session.idle_until, loop.time() - self.t0)
            elif item is _END:
                frames = await self._work(self.session.end_utterance)
            else:
                if not was_speaking:  # a new utterance
                    self.utterance_synced = 0
                pcm = [item]
                while self.inbox and self.inbox[0] is not _END:  # all waiting audio: one generator call
                    pcm.append(self.inbox.popleft())
                self.backlog = max(0.0, self.backlog - sum(len(p) for p in pcm) / self.sample_rate)
                if self.backlog <= MAX_BACKLOG_SECONDS:
                    self.room.set()
                frames = await self._work(self.session.push, pcm[0] if len(pcm) == 1 else _concat(pcm))
            await self._put_frames(frames)
            if item is _END:
                self._put_control({"type": "ended", "frames": self.session.next_index,
                                   "synced": self.utterance_synced if was_speaking else 0})

    async def _next_item(self, loop):
        while True:
            if self.inbox:
                return self.inbox.popleft()
            wait = self._idle_wait(loop.time())
            if wait is not None and wait <= 0:
                return _IDLE
            self.inbox_event.clear()
            try:
                await asyncio.wait_for(self.inbox_event.wait(), wait)
            except asyncio.TimeoutError:
                return _IDLE

    def _idle_wait(self, now):
        """Seconds until the avatar's own frames are due (None: no audio yet, so no timeline)."""
        if self.t0 is None:
            return None
        quiet = now - self.last_audio
        if quiet < self.state.idle_after:
            return self.state.idle_after - quiet
        # idle_until(s) gives the frames before int(s * fps): the next one at (next_index + 1) / fps
        return self.t0 + (self.session.next_index + 1) / self.fps + 0.001 - now

    async def _work(self, call, *args):
        """Run an engine call in the worker thread; its frames, encoded there too."""
        image_format, quality = self.image_format, self.state.jpeg_quality

        def job():
            return [(f.synced, encode_frame(f, image_format, quality)) for f in call(*args)]

        return await asyncio.get_running_loop().run_in_executor(self.state.executor, job)

    async def _put_frames(self, frames):
        for synced, message in frames:
            self.frames_made += 1
            self.utterance_synced += bool(synced)
            if self.frames_queued >= self.state.queue_frames:
                await asyncio.sleep(0)  # let the sender take what the socket accepts first
            while self.frames_queued >= self.state.queue_frames:
                self._drop_oldest()
            self.outbox.append((_FRAME, (synced, message)))
            self.frames_queued += 1
            self.peak_queued = max(self.peak_queued, self.frames_queued)
            self.outbox_event.set()

    def _put_control(self, message):
        if len(self.outbox) >= self.state.queue_frames + 32:  # a client sending "end" after "end", not reading
            self.outbox.popleft()
            self.dropped += 1
        self.outbox.append((_CONTROL, message))
        self.outbox_event.set()

    def _drop_oldest(self):
        for i, (kind, _) in enumerate(self.outbox):
            if kind is _FRAME:
                del self.outbox[i]
                self.frames_queued -= 1
                self.dropped += 1
                return

    # ---- sender -------------------------------------------------------------------------
    async def _send(self):
        try:
            await self._send_all()
        except ConnectionError:  # the client is gone: the session ends
            pass

    async def _send_all(self):
        loop = asyncio.get_running_loop()
        last_stats = loop.time()
        while True:
            if not self.outbox:
                self.outbox_event.clear()
                await self.outbox_event.wait()
                continue
            kind, payload = self.outbox.popleft()
            if kind is _FRAME:
                self.frames_queued -= 1
                synced, message = payload
                await self.ws.send_bytes(message)
                self.frames_sent += 1
                self.synced_sent += bool(synced)
            else:
                if payload["type"] == "ended":
                    payload = dict(payload, sent=self.frames_sent, dropped=self.dropped)
                await self.ws.send_str(json.dumps(payload))
            if self.session is not None and loop.time() - last_stats >= STATS_EVERY:
                last_stats = loop.time()
                await self.ws.send_str(json.dumps({
                    "type": "stats", "sent": self.frames_sent, "dropped": self.dropped,
                    "queued": self.frames_queued, "backlog_ms": round(self.backlog * 1000)}))


def _concat(arrays):
    import numpy as np
    return np.concatenate(arrays)


def _host_allowed(request):
    state = request.app[STATE]
    if not state.local_only:
        return True
    host = request.url.host or ""
    return host.strip("[]").lower() in LOCAL_HOSTS


def _same_origin(request):
    """True without an Origin header (not a browser), else when it names the address asked for."""
    from urllib.parse import urlsplit
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    try:
        return urlsplit(origin).netloc.lower() == request.host.lower()
    except ValueError:
        return False


async def _page(request):
    if not _host_allowed(request):
        raise web.HTTPForbidden(text="this server answers requests to localhost only\n")
    with open(PAGE, "rb") as f:
        body = f.read()
    return web.Response(body=body, content_type="text/html", charset="utf-8", headers={
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline' blob:; "
                                   "style-src 'unsafe-inline'; img-src blob: data:; media-src blob:; "
                                   "connect-src 'self' ws: wss:; worker-src blob:; base-uri 'none'; "
                                   "form-action 'none'; frame-ancestors 'none'"})


async def _websocket(request):
    state = request.app[STATE]
    if not _host_allowed(request):
        raise web.HTTPForbidden(text="this server answers requests to localhost only\n")
    if not _same_origin(request):
        raise web.HTTPForbidden(text="WebSocket from a page of another origin\n")
    ws = web.WebSocketResponse(max_msg_size=4 * state.max_message_bytes, compress=False, timeout=2.0,
                               autoping=True)
    await ws.prepare(request)
    if len(state.sessions) >= state.max_sessions:
        state.refused += 1
        n = state.max_sessions
        try:
            await asyncio.wait_for(ws.send_str(json.dumps({
                "type": "error",
                "message": f"server busy: {n} session{'s' if n != 1 else ''} already open (--max_sessions "
                           f"{n}); try again later"})), 2)
            await asyncio.wait_for(ws.close(code=WSCloseCode.TRY_AGAIN_LATER), 3)
        except (asyncio.TimeoutError, ConnectionError, RuntimeError):
            pass
        return ws
    connection = Connection(state, ws)
    state.sessions.add(connection)
    try:
        await connection.run()
    finally:
        state.sessions.discard(connection)
        state.finished.append(connection.summary())
    return ws


async def _on_shutdown(app):
    for connection in list(app[STATE].sessions):
        try:
            await asyncio.wait_for(connection.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown"), 2)
        except (asyncio.TimeoutError, ConnectionError, RuntimeError):
            pass


async def _on_cleanup(app):
    app[STATE].executor.shutdown(wait=False, cancel_futures=True)


def make_app(engine, max_sessions=2, jpeg_quality=80, idle_after=0.5, max_message_bytes=256 * 1024,
             queue_frames=None, local_only=True):
    """The aiohttp application serving `engine` (a live.Engine) as described above.

    queue_frames: frames held for a slow reader (default QUEUE_SECONDS of them);
    local_only: answer only requests addressed to localhost (serve_forever sets it from --host).
    """
    if max_sessions < 1:
        raise ValueError(f"max_sessions must be at least 1, got {max_sessions}")
    if not 0 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be 0..100, got {jpeg_quality}")
    if idle_after <= 0 or max_message_bytes < 1024:
        raise ValueError("idle_after must be positive and max_message_bytes at least 1024")
    if queue_frames is None:
        queue_frames = max(1, int(round(QUEUE_SECONDS * engine.avatar.fps)))
    if queue_frames < 1:
        raise ValueError(f"queue_frames must be at least 1, got {queue_frames}")
    if not os.path.isfile(PAGE):
        raise FileNotFoundError(f"{PAGE}: the page is missing")
    app = web.Application()
    app[STATE] = ServerState(engine, max_sessions, jpeg_quality, idle_after, max_message_bytes, queue_frames,
                             local_only)
    app.router.add_get("/", _page)
    app.router.add_get("/ws", _websocket)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app


def is_loopback(host):
    import ipaddress
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve_forever(engine, host="127.0.0.1", port=8010, max_sessions=2, jpeg_quality=80):
    """Serve the page and its WebSocket on host:port until Ctrl-C (prints the address)."""
    from cli import UserError
    if not 0 <= jpeg_quality <= 100:
        raise UserError(f"--jpeg_quality must be 0..100, got {jpeg_quality}")
    local = is_loopback(host)
    app = make_app(engine, max_sessions=max_sessions, jpeg_quality=jpeg_quality, local_only=local)

    async def main():
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            try:
                await site.start()
            except OSError as e:
                why = os.strerror(e.errno) if e.errno else str(e)
                raise UserError(f"cannot listen on {host}:{port}: {why}") from None
            shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
            if ":" in shown and not shown.startswith("["):
                shown = f"[{shown}]"
            print(f"serving {engine.avatar.width}x{engine.avatar.height} at {engine.avatar.fps:g} fps on "
                  f"http://{shown}:{port}/  (Ctrl-C to stop)", file=sys.stderr, flush=True)
            if not local:
                print(f"listening on {host}: other machines can connect (no password); browsers give "
                      "the microphone only to https or localhost pages", file=sys.stderr, flush=True)
            while True:
                await asyncio.sleep(3600)
        finally:
            await runner.cleanup()

    started = time.monotonic()
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print(f"stopped after {time.monotonic() - started:.0f} s", file=sys.stderr)
