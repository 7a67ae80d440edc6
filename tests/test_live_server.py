"""live_server.py: the page, the WebSocket protocol, its limits, with aiohttp's test client.

The engine is conftest's live_media (a 10-frame 128x96 avatar, fp32 CPU): audio is kept to
slices of its 1.3 s of speech so that the file stays near half a minute of CPU.
"""
import asyncio
import json
import math
import re
import time
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("aiohttp")
from aiohttp import WSMsgType  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

import live_server  # noqa: E402
from live import LiveFrame  # noqa: E402
from lipsync import mel_chunk_starts  # noqa: E402

SLOT = 640  # 16 kHz samples per frame at 25 fps


def run(app, scenario, timeout=90):
    """Run `scenario(client)` against `app` in a fresh event loop; its result."""
    async def main():
        async with TestClient(TestServer(app)) as client:
            return await asyncio.wait_for(scenario(client), timeout)
    return asyncio.run(main())


async def receive(ws, timeout=30):
    """The next message: a dict for text, {"type": "frame", ...} for a frame, {"type": "closed"} at the end."""
    msg = await ws.receive(timeout=timeout)
    if msg.type == WSMsgType.TEXT:
        return json.loads(msg.data)
    if msg.type == WSMsgType.BINARY:
        header, audio, image = live_server.decode_frame(msg.data)
        return {"type": "frame", "at": time.perf_counter(), "audio": audio, "image": image, **header}
    return {"type": "closed", "code": ws.close_code}


async def collect(ws, until, timeout=60):
    """Messages up to and including the first for which until(message) is true."""
    messages, deadline = [], time.perf_counter() + timeout
    while True:
        message = await receive(ws, timeout=max(0.1, deadline - time.perf_counter()))
        messages.append(message)
        if until(message) or message["type"] == "closed":
            return messages


async def start(client, rate=16000, fmt="f32", image="png"):
    ws = await client.ws_connect("/ws")
    await ws.send_str(json.dumps({"type": "start", "sample_rate": rate, "format": fmt, "image": image}))
    return ws


async def send_audio(ws, pcm, chunk_seconds=1 / 3, rate=16000, end=True, real_time=False):
    step = int(round(chunk_seconds * rate))
    for i in range(0, len(pcm), step):
        await ws.send_bytes(pcm[i:i + step].tobytes())
        if real_time:
            await asyncio.sleep(chunk_seconds)
    if end:
        await ws.send_str(json.dumps({"type": "end"}))


def decode(image):
    import cv2
    return cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)


def frames_of(messages):
    return [m for m in messages if m["type"] == "frame"]


@pytest.fixture(scope="module")
def speech(live_media):
    """The fixture's speech as int16 (s16) and float32 (f32, = int16 / 32768, as audio.load_wav reads it)."""
    from scipy.io import wavfile
    from audio import load_wav
    rate, pcm16 = wavfile.read(live_media.speech)
    assert rate == 16000 and pcm16.dtype == np.int16
    pcm32 = load_wav(live_media.speech, 16000)
    np.testing.assert_array_equal(pcm32, pcm16.astype(np.float32) / 32768)
    return SimpleNamespace(s16=pcm16, f32=pcm32)


@pytest.fixture(scope="module")
def reference(live_media, speech):
    """engine.stream's frames for the whole speech (inference.py's frames)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the server's worker thread; 2 contend on a loaded 2-core machine
    try:
        stream = live_media.engine.stream()
        return stream.push(speech.f32) + stream.finish()
    finally:
        torch.set_num_threads(threads)


def check_utterance(messages, engine, pcm16, reference, compare=None):
    """An utterance sent from timeline frame 0, then "end": the stream's frames (<= 1 grey level),
    the avatar's own frames to the end of the audio, every frame with its slot of the audio."""
    ended = [m for m in messages if m["type"] == "ended"]
    assert len(ended) == 1 and messages[-1] is ended[0]
    frames = frames_of(messages)
    total = math.ceil(len(pcm16) / SLOT)
    assert [f["index"] for f in frames] == list(range(total))
    assert ended[0] == {"type": "ended", "frames": total, "synced": len(reference), "sent": total, "dropped": 0}
    compare = len(reference) if compare is None else compare
    assert [f["synced"] for f in frames] == [True] * len(reference) + [False] * (total - len(reference))
    for frame, expected in zip(frames[:compare], reference):
        assert frame["timestamp"] == pytest.approx(expected.index / 25)
        got = decode(frame["image"]).astype(int)
        assert np.abs(got - expected.image.astype(int)).max() <= 1, frame["index"]
    avatar = engine.avatar
    for frame in frames[len(reference):]:
        own = np.asarray(avatar.frame(avatar.frame_index(frame["index"])))
        np.testing.assert_array_equal(decode(frame["image"]), own)
    assert all(f["samples"] == SLOT for f in frames)
    sound = np.concatenate([f["audio"] for f in frames])
    padded = np.zeros(total * SLOT, np.int16)
    padded[:len(pcm16)] = pcm16
    np.testing.assert_array_equal(sound, padded)


def test_page_and_nothing_else(live_media):
    app = live_server.make_app(live_media.engine)

    async def scenario(client):
        page = await client.get("/")
        body = await page.text()
        assert page.status == 200 and page.content_type == "text/html"
        assert "new WebSocket" in body and '"start"' in body and "liveStats" in body
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", body)  # nothing from elsewhere
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        for path in ("/web/realtime.html", "/realtime.html", "/live_server.py", "/../live_server.py", "/ws/x"):
            assert (await client.get(path)).status == 404, path
        assert (await client.post("/")).status == 405
        # DNS rebinding: a name other than localhost; cross-site WebSocket: another page's origin
        assert (await client.get("/", headers={"Host": "evil.example:8010"})).status == 403
        other = await client.get("/ws", headers={"Origin": "http://evil.example", "Connection": "Upgrade",
                                                 "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert other.status == 403
        same = await client.ws_connect("/ws", origin=f"http://{client.host}:{client.port}")
        await same.send_str(json.dumps({"type": "stop"}))
        assert (await receive(same))["type"] == "closed"

    run(app, scenario)


def test_file_over_websocket_gives_the_stream_frames(live_media, speech, reference):
    """f32 in 333 ms chunks, png out: frames, indices and images of engine.stream, then own frames."""
    app = live_server.make_app(live_media.engine)

    async def scenario(client):
        ws = await start(client)
        ready = await receive(ws)
        assert ready["type"] == "ready"
        assert (ready["fps"], ready["width"], ready["height"], ready["sample_rate"]) == (25, 128, 96, 16000)
        assert ready["lookahead_ms"] == pytest.approx(212.5)
        await send_audio(ws, speech.f32)
        messages = await collect(ws, lambda m: m["type"] == "ended")
        await ws.send_str(json.dumps({"type": "stop"}))
        await collect(ws, lambda m: False)
        return messages

    messages = run(app, scenario)
    assert len(reference) == 30
    check_utterance([m for m in messages if m["type"] != "stats"], live_media.engine, speech.s16, reference)
    state = app[live_server.STATE]
    assert not state.sessions and state.finished[-1]["error"] is None


BAD = [  # (what the client sends after connecting, the error message's words)
    ([b"\0" * 640], 'audio before "start"'),
    (["{not json"], "invalid JSON"),
    (['["start"]'], "JSON object"),
    (['{"type": "dance"}'], "unknown message type"),
    (['{"type": "end"}'], '"end" before "start"'),
    (['{"type": "start", "sample_rate": 4000, "format": "f32"}'], "bad sample_rate"),
    (['{"type": "start", "sample_rate": 500000, "format": "f32"}'], "bad sample_rate"),
    (['{"type": "start", "sample_rate": "16000", "format": "f32"}'], "bad sample_rate"),
    (['{"type": "start", "sample_rate": 16000, "format": "f64"}'], "bad format"),
    (['{"type": "start", "sample_rate": 16000, "format": "f32", "image": "gif"}'], "bad image"),
    (['{"type": "start", "sample_rate": 16000, "format": "f32"}'] * 2, "second"),
    (['{"type": "start", "sample_rate": 16000, "format": "f32"}', b"\0" * (300 * 1024)], "message too big"),
    (['{"type": "start", "sample_rate": 16000, "format": "f32"}', '{"type": "end", "pad": "' + "x" * 300000 + '"}'],
     "message too big"),
    (['{"type": "start", "sample_rate": 16000, "format": "f32"}', b"\0" * 1002], "whole number"),
    (['{"type": "start", "sample_rate": 8000, "format": "s16"}', b"\0" * (2 * 8000 * 3)], "at most 2 s"),
    (['{"type": "start", "sample_rate": 16000, "format": "f32"}', np.full(320, np.nan, np.float32).tobytes()],
     "NaN"),
]


def test_bad_messages_end_only_their_session(live_media, speech, reference):
    """Each malformed message: an error, then the close, at once, while a good session (s16 in)
    running at the same time gets all its frames right."""
    app = live_server.make_app(live_media.engine, max_sessions=4)

    async def good(client):
        ws = await start(client, fmt="s16")
        assert (await receive(ws))["type"] == "ready"
        await send_audio(ws, speech.s16, real_time=True)  # 1.3 s at least, however fast the machine
        messages = await collect(ws, lambda m: m["type"] == "ended")
        await ws.close()
        return messages

    async def bad(client, sends):
        ws = await client.ws_connect("/ws")
        began = time.perf_counter()
        for item in sends:
            await (ws.send_bytes(item) if isinstance(item, bytes) else ws.send_str(item))
        messages = await collect(ws, lambda m: False, timeout=10)
        return messages, time.perf_counter() - began

    async def scenario(client):
        good_task = asyncio.create_task(good(client))
        while not app[live_server.STATE].sessions or not any(
                s.frames_made for s in app[live_server.STATE].sessions):
            await asyncio.sleep(0.02)  # the good session is generating
        results = []
        for sends, _ in BAD:
            results.append(await bad(client, sends))
        busy_while_bad = not good_task.done()
        return await good_task, results, busy_while_bad

    good_messages, results, busy_while_bad = run(app, scenario)
    assert busy_while_bad, "the good session ended before the bad ones were tried: test too weak"
    for (sends, words), (messages, seconds) in zip(BAD, results):
        kinds = [m["type"] for m in messages]
        assert kinds[-2:] == ["error", "closed"] and set(kinds[:-2]) <= {"ready"}, (words, messages)
        assert words in messages[-2]["message"], (words, messages[-2])
        assert messages[-1]["code"] in (1008, 1009), messages[-1]
        assert seconds < 3, (words, seconds)  # not queued behind the generator
    check_utterance([m for m in good_messages if m["type"] != "stats"], live_media.engine, speech.s16, reference)
    state = app[live_server.STATE]
    assert not state.sessions
    assert sum(1 for s in state.finished if s["error"]) == len(BAD)


def test_session_limit(live_media, speech, reference):
    """max_sessions=1: a second connection is told the server is busy and closed; the first goes on."""
    app = live_server.make_app(live_media.engine, max_sessions=1)
    part = speech.s16[:9600]  # 0.6 s

    async def scenario(client):
        first = await start(client, fmt="s16")
        assert (await receive(first))["type"] == "ready"
        await send_audio(first, part)
        second = await client.ws_connect("/ws")
        refused = await collect(second, lambda m: False, timeout=10)
        messages = await collect(first, lambda m: m["type"] == "ended")
        await first.close()
        while app[live_server.STATE].sessions:
            await asyncio.sleep(0.01)
        third = await start(client)  # the slot is free again
        again = await receive(third)
        await third.close()
        return refused, messages, again

    refused, messages, again = run(app, scenario)
    assert [m["type"] for m in refused] == ["error", "closed"]
    assert refused[0]["message"].startswith("server busy: 1 session already open")
    assert refused[1]["code"] == 1013
    frames = frames_of(messages)
    assert [f["index"] for f in frames] == list(range(15))
    assert sum(f["synced"] for f in frames) == messages[-1]["synced"] == len(mel_chunk_starts(1 + 9600 // 200, 25))
    for frame, expected in zip(frames[:8], reference):  # windows inside the 0.6 s: the whole file's frames
        assert np.abs(decode(frame["image"]).astype(int) - expected.image.astype(int)).max() <= 1
    assert again["type"] == "ready"
    assert app[live_server.STATE].refused == 1


class StubEngine:
    """An engine of big incompressible frames made at once: a 640x480 noise image per 640 samples."""

    def __init__(self):
        self.avatar = SimpleNamespace(fps=25, width=640, height=480, frame_count=1, img_size=96)
        self.image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)

    def session(self, sample_rate=16000):
        engine = self

        class Session:
            next_index, speaking = 0, False

            def push(self, pcm):
                frames = []
                for _ in range(len(pcm) // SLOT):
                    g = self.next_index
                    frames.append(LiveFrame(g, g / 25, engine.image, np.zeros(SLOT, np.float32), True))
                    self.next_index += 1
                return frames

            def end_utterance(self):
                return []

            def idle_until(self, seconds):
                return []

        return Session()


def test_slow_reader_gets_frames_dropped_not_queued():
    """A client that does not read: at most queue_frames frames wait, the oldest are dropped and counted."""
    app = live_server.make_app(StubEngine(), jpeg_quality=100, queue_frames=4)  # ~600 KB a frame
    total = 60

    async def scenario(client):
        ws = await start(client, image="jpeg")
        await send_audio(ws, np.zeros(total * SLOT, np.float32), chunk_seconds=0.4)
        state = app[live_server.STATE]
        while not state.sessions or next(iter(state.sessions)).frames_made < total:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        (session,) = state.sessions
        during = session.summary()
        messages = await collect(ws, lambda m: m["type"] == "ended")
        await ws.close()
        return during, messages

    during, messages = run(app, scenario)
    assert during["frames_made"] == total
    assert during["peak_queued"] <= 4
    assert during["dropped"] >= total // 2, during  # 36 MB of frames: the socket holds a few
    frames = frames_of(messages)
    ended = messages[-1]
    assert ended["type"] == "ended" and ended["dropped"] == during["dropped"]
    assert len(frames) == ended["sent"] == total - ended["dropped"]
    indices = [f["index"] for f in frames]
    assert indices == sorted(indices) and indices[-1] == total - 1  # the newest are kept


def test_idle_frames_after_audio_stops_then_lip_sync_again(live_media, speech):
    """No audio for idle_after: the avatar's own frames at the frame rate, on the same timeline;
    the next audio is lip-synced again."""
    app = live_server.make_app(live_media.engine, idle_after=0.3)

    async def scenario(client):
        ws = await start(client, fmt="s16")
        assert (await receive(ws))["type"] == "ready"
        sent_at = time.perf_counter()
        await send_audio(ws, speech.s16[:8000], end=False)  # 0.5 s, no "end"
        messages = await collect(ws, lambda m: m["type"] == "frame" and m["at"] > sent_at + 3.0)
        await send_audio(ws, speech.s16[8000:14400])  # 0.4 s more, then "end"
        messages += await collect(ws, lambda m: m["type"] == "ended")
        await ws.close()
        return sent_at, messages

    sent_at, messages = run(app, scenario)
    frames = frames_of(messages)
    assert [f["index"] for f in frames] == list(range(len(frames)))  # one timeline, no gaps
    synced = [f["synced"] for f in frames]
    first_own = synced.index(False)
    assert synced[:first_own] == [True] * len(mel_chunk_starts(1 + 8000 // 200, 25))  # flushed after 0.3 s
    resumed = synced.index(True, first_own)
    own = frames[first_own:resumed]
    assert not any(f["synced"] for f in own) and len(own) >= 40
    steady = [f for f in own if f["at"] > own[0]["at"] + 0.5]  # past the catch-up after the flush
    rate = (len(steady) - 1) / (steady[-1]["at"] - steady[0]["at"])
    assert 18 < rate < 32, rate
    for f in steady:  # frame g leaves once g / fps seconds of wall time have passed since the first audio
        assert f["at"] - sent_at == pytest.approx((f["index"] + 1) / 25, abs=0.25), (f["index"], f["at"] - sent_at)
    after = frames[resumed:]
    expected = len(mel_chunk_starts(1 + 6400 // 200, 25))  # inference.py's frame count for 0.4 s
    assert [f["synced"] for f in after] == [True] * expected + [False] * (10 - expected)
    assert messages[-1]["type"] == "ended" and messages[-1]["synced"] == expected
    assert messages[-1]["frames"] == after[-1]["index"] + 1
