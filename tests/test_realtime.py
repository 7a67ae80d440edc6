"""Real time: avatars, the streaming engine (frames equal inference.py's), the live timeline, realtime.py run."""
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

import inference
import live
import realtime
import videoio
from audio import load_wav
from avatar import Avatar, loop_index
from cli import UserError
from conftest import LIVE_BOX, capture_frames
from lipsync import mel_chunk_starts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def inference_frames(live_media):
    """inference.py's frames (before H.264) for live_media's video, speech and --box."""
    frames = []
    with pytest.MonkeyPatch.context() as m:
        capture_frames(m, frames)
        inference.main(["--checkpoint_path", live_media.checkpoint, "--face", live_media.video,
                        "--audio", live_media.speech, "--box", *map(str, LIVE_BOX), "--quiet",
                        "--outfile", str(live_media.root / "inference.mp4"), "--no_box_cache"])
    return frames


def streamed(engine, wav, chunk):
    stream = engine.stream()
    frames = []
    for i in range(0, len(wav), chunk):
        frames += stream.push(wav[i:i + chunk])
    return frames + stream.finish()


def grey_levels_apart(a, b):
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.mark.parametrize("chunk", [1, 160, 5333, None], ids=["1 sample", "10 ms", "333 ms", "whole file"])
def test_streamed_fp32_frames_equal_inference(live_media, inference_frames, chunk):
    wav = load_wav(live_media.speech, 16000)
    frames = streamed(live_media.engine, wav, chunk or len(wav))
    assert len(inference_frames) == 30
    assert [f.index for f in frames] == list(range(len(inference_frames)))
    np.testing.assert_allclose([f.timestamp for f in frames], np.arange(30) / 25)
    worst = max(grey_levels_apart(f.image, e) for f, e in zip(frames, inference_frames))
    assert worst <= 1
    if chunk is None:  # all frames in one batch: the same kernels as inference.py's, bit for bit
        assert worst == 0


def test_int16_pcm_gives_the_float_frames(live_media):
    wav = load_wav(live_media.speech, 16000)
    pcm = np.round(wav * 32768).astype(np.int16)  # the WAV's own samples (load_wav = int16 / 32768)
    a, b = streamed(live_media.engine, wav, len(wav)), streamed(live_media.engine, pcm, len(pcm))
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b)) and len(a) == len(b)


class BlankEngine:
    """Engine stand-in for frame-count arithmetic: records windows, renders nothing."""

    def __init__(self, fps):
        self.avatar = SimpleNamespace(fps=fps)
        self.windows = []

    def render(self, indices, mels):
        self.windows += [m.copy() for m in mels]
        return [np.zeros((1, 1, 3), np.uint8) for _ in indices]


@pytest.mark.parametrize("fps", [25.0, 29.97, 30.0])
@pytest.mark.parametrize("samples", [3200, 3399, 3400, 16000, 16123, 16200, 23456])
def test_stream_gives_inference_frame_count_and_windows(fps, samples):
    import audio
    wav = (np.random.RandomState(samples).randn(samples) * 0.1).astype(np.float32)
    engine = BlankEngine(fps)
    stream = live.LipSyncStream(engine)
    early = sum(len(stream.push(wav[i:i + 700])) for i in range(0, samples, 700))
    frames = early + len(stream.finish())
    mel = audio.melspectrogram(wav)
    starts = mel_chunk_starts(mel.shape[1], fps)
    assert frames == len(starts)
    assert early >= len(starts) - 2  # only the windows that read the end's padding wait for finish()
    for window, start in zip(engine.windows, starts):
        np.testing.assert_array_equal(window, mel[:, start:start + 16])


def test_frame_leaves_with_the_lookahead_sample(live_media):
    # Frame i needs mel frames up to int(3.2 i) + 15, final once sample (int(3.2 i) + 15) * 200 + 399 is in.
    engine = BlankEngine(25.0)
    stream = live.LipSyncStream(engine)
    wav = (np.random.RandomState(3).randn(12000) * 0.1).astype(np.float32)
    released = {}
    for n in range(0, len(wav), 10):
        for frame in stream.push(wav[n:n + 10]):
            released[frame.index] = n + 10
    for i, samples_in in released.items():
        needed = (int(i * 3.2) + 15) * 200 + 400
        assert needed <= samples_in < needed + 10
    assert live.lookahead_seconds(25) == pytest.approx(0.2125)


def test_pingpong_order():
    assert [loop_index(i, 4, "pingpong") for i in range(10)] == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert [loop_index(i, 4, "forward") for i in range(6)] == [0, 1, 2, 3, 0, 1]
    assert [loop_index(i, 1, "pingpong") for i in range(3)] == [0, 0, 0]


def test_pingpong_avatar_shows_frames_back_and_forth(live_media, tmp_path):
    folder = tmp_path / "pingpong"
    avatar = realtime.main(["prepare", "--face", live_media.video, "--avatar", str(folder), "--loop", "pingpong",
                            "--box", *map(str, LIVE_BOX), "--quiet"])
    assert avatar.loop == "pingpong" and avatar.frame_count == 10
    engine = live.Engine(avatar, live_media.engine.runner)
    session = engine.session()
    frames = session.idle_until(1.0)  # 25 of the avatar's own frames
    order = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6]
    assert [f.index for f in frames] == list(range(25))
    for frame, k in zip(frames, order):
        assert np.array_equal(frame.image, live_media.frames[k])


def test_avatar_holds_inference_frames_boxes_and_crops(live_media):
    avatar = Avatar(live_media.avatar)
    assert (avatar.frame_count, avatar.width, avatar.height, avatar.fps, avatar.img_size) == (10, 128, 96, 25, 96)
    y1, y2, x1, x2 = LIVE_BOX
    for k in range(10):
        assert np.array_equal(avatar.frame(k), live_media.frames[k])
        assert avatar.coords(k) == LIVE_BOX
        import cv2
        assert np.array_equal(avatar.face(k), cv2.resize(live_media.frames[k][y1:y2, x1:x2], (96, 96)))


def test_prepared_avatar_is_reused_and_a_mismatched_one_refused(live_media, monkeypatch, capsys):
    import streaming

    def no_detection(*a, **k):
        raise AssertionError("a reused avatar must not detect faces again")

    monkeypatch.setattr(streaming, "load_face_detector", no_detection)
    before = os.path.getmtime(os.path.join(live_media.avatar, "frames.npy"))
    realtime.main(["prepare", "--face", live_media.video, "--avatar", live_media.avatar,
                   "--box", *map(str, LIVE_BOX)])
    assert "reused Avatar" in capsys.readouterr().out
    assert os.path.getmtime(os.path.join(live_media.avatar, "frames.npy")) == before
    with pytest.raises(UserError, match=r"prepared with other options \(box 20 80 30 100 there, 20 80 30 90 now; "
                                        r"pads 0 10 0 0 there, 0 20 0 0 now\)"):
        realtime.main(["prepare", "--face", live_media.video, "--avatar", live_media.avatar,
                       "--box", "20", "80", "30", "90", "--pads", "0", "20", "0", "0"])
    with pytest.raises(UserError, match="img_size 96 there, 288 now"):
        realtime.main(["prepare", "--face", live_media.video, "--avatar", live_media.avatar,
                       "--box", *map(str, LIVE_BOX), "--img_size", "288"])


def test_avatar_of_another_face_size_is_refused_by_the_generator(live_media, tmp_path):
    from checkpoints import save_checkpoint
    from models import Wav2Lip
    hd = str(tmp_path / "hd.pth")
    save_checkpoint(hd, Wav2Lip(img_size=288))
    with pytest.raises(UserError, match=r"avatar of 96x96 faces, but the generator makes 288x288 faces: "
                                        r"prepare the avatar with --img_size 288"):
        realtime.main(["run", "--avatar", live_media.avatar, "--checkpoint_path", hd, "--audio", live_media.speech])


@pytest.mark.parametrize("folder, message", [
    ("missing", r"not an avatar folder \(no avatar.json"),
    ("notes", "exists and is not an avatar folder"),
])
def test_bad_avatar_folders(live_media, tmp_path, folder, message):
    path = tmp_path / folder
    if folder == "notes":
        path.mkdir()
        (path / "notes.txt").write_text("mine")
        with pytest.raises(UserError, match=message):
            realtime.main(["prepare", "--face", live_media.video, "--avatar", str(path), "--box", *map(str, LIVE_BOX)])
        assert os.listdir(path) == ["notes.txt"]
    else:
        with pytest.raises(UserError, match=message):
            realtime.main(["run", "--avatar", str(path), "--checkpoint_path", live_media.checkpoint,
                           "--audio", live_media.speech])


def test_session_timeline_utterances_and_idle_frames(live_media, inference_frames):
    wav = load_wav(live_media.speech, 16000)
    session = live_media.engine.session()
    frames = []
    for i in range(0, len(wav), 640):
        frames += session.push(wav[i:i + 640])
    frames += session.end_utterance()
    # The utterance: inference.py's 30 frames, then own frames to the end of its 1.3 s of audio.
    assert [f.index for f in frames] == list(range(33)) and len(wav) == 20800
    assert [f.synced for f in frames] == [True] * 30 + [False] * 3
    assert max(grey_levels_apart(f.image, e) for f, e in zip(frames, inference_frames)) <= 1
    assert np.array_equal(frames[31].image, live_media.frames[31 % 10])
    np.testing.assert_array_equal(np.concatenate([f.audio for f in frames])[:len(wav)], wav)
    assert all(len(f.audio) == 640 for f in frames)
    # Silence: own frames over silence up to 2 s, then the next utterance continues the timeline.
    idle = session.idle_until(2.0)
    assert [f.index for f in idle] == list(range(33, 50)) and not any(f.synced or f.audio.any() for f in idle)
    more = session.push(wav[:8000]) + session.end_utterance()
    assert [f.index for f in more] == list(range(50, 50 + len(more))) and more[0].synced
    assert np.array_equal(np.concatenate([f.audio for f in more])[:8000], wav[:8000])


def test_other_sample_rates_are_resampled(live_media):
    import soxr
    wav = load_wav(live_media.speech, 16000)[:8000]
    at_48k = soxr.resample(wav, 16000, 48000)
    session = live_media.engine.session(sample_rate=48000)
    frames = []
    for i in range(0, len(at_48k), 1000):
        frames += session.push(at_48k[i:i + 1000])
    frames += session.end_utterance()
    reference = live_media.engine.session()
    expected = reference.push(wav) + reference.end_utterance()
    assert len(frames) == len(expected)
    assert sum(f.synced for f in frames) == sum(f.synced for f in expected)
    error = np.concatenate([f.audio for f in frames])[:7900] - wav[:7900]
    assert np.sqrt(np.mean(error ** 2)) < 0.05 * np.sqrt(np.mean(wav ** 2))  # the same sound, to -26 dB


def test_run_from_file_writes_inference_frames_and_audio(live_media, inference_frames, tmp_path, monkeypatch):
    written = []
    original = videoio.LiveWriter.write

    def recording(self, image, audio):
        written.append((image.copy(), np.asarray(audio).copy()))
        original(self, image, audio)

    monkeypatch.setattr(videoio.LiveWriter, "write", recording)
    out = tmp_path / "out" / "live.mp4"
    stats = realtime.main(["run", "--avatar", live_media.avatar, "--checkpoint_path", live_media.checkpoint,
                           "--audio", live_media.speech, "--out", str(out), "--as_fast_as_possible", "--quiet"])
    assert stats["frames"] == 33 and len(written) == 33 and len(stats["latencies"]) == 30
    assert max(grey_levels_apart(image, e) for (image, _), e in zip(written, inference_frames)) <= 1
    with videoio.VideoReader(str(out)) as video:
        assert (video.frame_count, video.width, video.height) == (33, 128, 96)
    videoio.extract_audio(str(out), str(tmp_path / "sound.wav"))
    sound = load_wav(str(tmp_path / "sound.wav"), 16000)
    assert abs(len(sound) - 20800) < 1600  # AAC's frame padding at most
    assert os.listdir(out.parent) == ["live.mp4"]  # no temporary file left


def test_run_from_stdin_keeps_the_frame_rate_through_a_pause(live_media, tmp_path):
    # A TTS pipe: 0.6 s of speech, a pause, 0.6 s more: own frames fill the pause.
    wav = load_wav(live_media.speech, 16000)
    pcm = np.round(wav * 32767).astype("<i2")
    out = tmp_path / "piped.mp4"
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "realtime.py"), "run", "--avatar",
                                live_media.avatar, "--checkpoint_path", live_media.checkpoint, "--audio", "-",
                                "--out", str(out), "--idle_after", "0.3"],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=False)
    while b"lookahead" not in process.stderr.readline():  # the engine is loaded: the pipe is live from here
        assert process.poll() is None
    process.stdin.write(pcm[:9600].tobytes())
    process.stdin.flush()
    status = b""
    while b"frames," not in status:  # the live figures: the first utterance's frames are out
        status += process.stderr.read1(100)
    time.sleep(5)  # a pause (longer than what is left to compute, even on a loaded machine)
    process.stdin.write(pcm[9600:19200].tobytes())
    process.stdin.close()
    assert process.wait(timeout=300) == 0, process.stderr.read().decode()
    stderr = process.stderr.read().decode()
    idle = int(stderr.split(" idle frames")[0].rsplit(", ", 1)[1])
    assert idle >= 10  # the pause, in own frames at 25 fps
    with videoio.VideoReader(str(out)) as video:
        frames = video.frame_count
    assert frames >= 15 + 15 + 10


def test_run_errors_are_one_line(live_media, tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "realtime.py"), "run", "--avatar",
                             str(tmp_path / "none"), "--checkpoint_path", live_media.checkpoint, "--audio",
                             live_media.speech, "--out", str(tmp_path / "o.mp4")], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'none'}: not an avatar folder (no avatar.json; make one with realtime.py prepare)"]
    assert sorted(os.listdir(tmp_path)) == []


def test_warm_up_encodes_each_avatar_face_once(live_media):
    runner = live_media.engine.runner
    assert all(runner.has_features(k) for k in range(10))  # open_engine warmed it up
    before = runner.encoded_faces
    wav = load_wav(live_media.speech, 16000)
    streamed(live_media.engine, wav, 3200)
    assert runner.encoded_faces == before  # 30 frames, no face encoded again


def test_fast_fp32_is_within_two_grey_levels(live_media, inference_frames):
    args = realtime.build_parser().parse_args(["run", "--avatar", live_media.avatar, "--checkpoint_path",
                                               live_media.checkpoint, "--audio", live_media.speech, "--fast",
                                               "--quiet"])
    engine = realtime.open_engine(args)
    assert engine.runner.folded and engine.runner.precision == "fp32"
    frames = streamed(engine, load_wav(live_media.speech, 16000), 3200)
    assert len(frames) == 30
    differences = [grey_levels_apart(f.image, e) for f, e in zip(frames, inference_frames)]
    assert 0 < max(differences) <= 2


def test_run_to_a_live_stream_url(live_media, tmp_path):
    # --out as an ffmpeg URL: MPEG-TS over UDP, received here as it is sent.
    import socket
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.5)
    port = receiver.getsockname()[1]
    received = []

    def listen():
        while True:
            try:
                received.append(receiver.recv(65536))
            except socket.timeout:
                if done:
                    return

    import threading
    done = False
    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    stats = realtime.main(["run", "--avatar", live_media.avatar, "--checkpoint_path", live_media.checkpoint,
                           "--audio", live_media.speech, "--out", f"udp://127.0.0.1:{port}?pkt_size=1316",
                           "--as_fast_as_possible", "--quiet"])
    done = True
    thread.join()
    receiver.close()
    assert stats["frames"] == 33
    stream = b"".join(received)
    assert len(stream) > 10000 and len(stream) % 188 == 0
    assert all(stream[i] == 0x47 for i in range(0, len(stream), 188))  # MPEG-TS packets, each with its sync byte
    assert os.listdir(tmp_path) == []  # nothing written to disk for a URL


def test_prepare_with_detection_stores_the_padded_boxes(live_media, tmp_path, monkeypatch):
    import streaming
    import torch

    class FixedFace:  # one face at the same rect in every frame (so smoothing keeps it)
        device = torch.device("cpu")

        def detect_from_batch(self, frames):
            return [np.array([[30, 20, 100, 75, 0.99]], np.float32) for _ in frames]

    from face_detection import FaceAlignment
    FixedFace.get_detections_for_batch = FaceAlignment.get_detections_for_batch
    monkeypatch.setattr(streaming, "load_face_detector", lambda device, **options: FixedFace())
    folder = str(tmp_path / "detected")
    avatar = realtime.main(["prepare", "--face", live_media.video, "--avatar", folder, "--no_box_cache", "--quiet",
                            "--pads", "0", "10", "0", "0"])
    assert [avatar.coords(k) for k in range(10)] == [(20, 85, 30, 100)] * 10  # y1 y2 x1 x2, chin padded by 10
    assert avatar.options["detection"] == {"batch": 16, "device": "cpu", "precision": "fp32"}
    with pytest.raises(UserError, match="detection .* there, .* now"):
        realtime.main(["prepare", "--face", live_media.video, "--avatar", folder, "--no_box_cache", "--quiet",
                       "--face_det_batch_size", "8"])


def test_prepare_copes_with_a_video_that_under_reports_its_frames(live_media, tmp_path, monkeypatch):
    original = inference.face_source

    def under_reported(args):
        source = original(args)
        source.frame_count = 0  # as some containers tell OpenCV
        return source

    monkeypatch.setattr(inference, "face_source", under_reported)
    avatar = realtime.main(["prepare", "--face", live_media.video, "--avatar", str(tmp_path / "a"),
                            "--box", *map(str, LIVE_BOX), "--quiet"])
    assert avatar.frame_count == 10
    assert all(np.array_equal(avatar.frame(k), live_media.frames[k]) for k in range(10))
