"""videoio.py and devices.py: streaming reads, atomic H.264 writes, ffmpeg errors, device choice."""
import os
import subprocess

import numpy as np
import pytest
import torch

import audio
import devices
from cli import UserError
from synthetic import draw_face, speech_like_audio
from videoio import VideoReader, VideoWriter, extract_audio, ffmpeg_exe, read_image


def probe_streams(path):
    """(codec names) of a media file, read from ffmpeg's stream listing."""
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                            capture_output=True, text=True)
    return [line.split(":", 3)[-1].strip().split()[0] for line in result.stderr.splitlines()
            if "Stream #" in line]


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    audio.save_wav(speech_like_audio(2.0, seed=1), str(path), 16000)
    return path


def test_write_then_read_video_with_audio(tmp_path, speech_wav):
    out = tmp_path / "new folder" / "it's a $(test).mp4"
    frames = [draw_face(120, 160, mouth_open=i / 40, seed=i) for i in range(40)]
    with VideoWriter(out, 25, 160, 120, audio_path=speech_wav, crf=0, preset="ultrafast") as writer:
        for frame in frames:
            writer.write(frame)
    assert os.listdir(out.parent) == [out.name]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    assert probe_streams(out)[:2] == ["h264", "aac"]
    with VideoReader(out) as video:
        assert (video.fps, video.frame_count, video.width, video.height) == (25.0, 40, 160, 120)
        decoded = list(video)
    assert len(decoded) == 40
    # yuv420p round trip of smooth drawings: close, not exact.
    assert np.abs(decoded[7].astype(int) - frames[7]).mean() < 3
    wav_path = tmp_path / "back.wav"
    extract_audio(out, wav_path)
    wav = audio.load_wav(str(wav_path), 16000)
    assert abs(len(wav) / 16000 - 2.0) < 0.05  # the whole audio is muxed, as the reference does


def test_odd_sizes_are_padded_not_resampled(tmp_path):
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, 25, 161, 121, preset="ultrafast") as writer:
        writer.write(draw_face(121, 161))
    with VideoReader(out) as video:
        assert (video.width, video.height) == (162, 122)


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="POSIX scheduling priorities")
def test_encoder_runs_at_the_niceness_asked(tmp_path):
    with VideoWriter(tmp_path / "nice.mp4", 25, 64, 48, preset="ultrafast", nice=10) as writer:
        assert os.getpriority(os.PRIO_PROCESS, writer._process.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
        writer.write(np.zeros((48, 64, 3), np.uint8))
    assert (tmp_path / "nice.mp4").stat().st_size > 0


def test_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 25, 64, 48, preset="ultrafast") as writer:
            writer.write(np.zeros((48, 64, 3), np.uint8))
            raise RuntimeError("generator crashed")
    assert os.listdir(tmp_path) == []


def test_wrong_frame_shape(tmp_path):
    with pytest.raises(ValueError, match=r"expected \(48, 64, 3\) uint8"):
        with VideoWriter(tmp_path / "o.mp4", 25, 64, 48) as writer:
            writer.write(np.zeros((48, 65, 3), np.uint8))
    assert os.listdir(tmp_path) == []


def test_ffmpeg_error_is_a_user_error(tmp_path):
    bad = tmp_path / "speech.mp3"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match=r"ffmpeg failed to read the audio of .*speech\.mp3: "):
        extract_audio(bad, tmp_path / "x.wav")
    with pytest.raises(UserError, match=r"missing\.mp3: file not found"):
        extract_audio(tmp_path / "missing.mp3", tmp_path / "x.wav")


def test_unreadable_video_and_image(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(UserError, match=r"broken\.mp4: cannot open as a video"):
        VideoReader(bad)
    with pytest.raises(UserError, match=r"nope\.mp4: file not found"):
        VideoReader(tmp_path / "nope.mp4")
    img = tmp_path / "face.png"
    img.write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"face\.png: cannot read as an image"):
        read_image(img)


def test_devices():
    assert devices.get_device("cpu") == torch.device("cpu")
    assert devices.get_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            devices.get_device("cuda")
    with pytest.raises(UserError, match="unknown device 'tpu0'"):
        devices.get_device("tpu0")
