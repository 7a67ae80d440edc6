"""inference.py end to end on generated media: output file, frame exactness, options, bad input."""
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import inference
import streaming
import videoio
from audio import load_wav
from benchmarks import reference_inference
from conftest import write_face_media
from checkpoints import save_checkpoint
from cli import UserError
from face_detection import FaceAlignment
from models import Wav2Lip
from synthetic import draw_face, recipe_state_dict, speech_like_audio

W, H, N_FRAMES = 128, 96, 10
AUDIO_SECONDS = 0.6  # 49 mel frames -> 12 output frames at 25 fps: the 10-frame video loops
N_OUT = 12
BOX = (20, 80, 30, 100)  # y1 y2 x1 x2


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    video, speech, frames = write_face_media(str(root), W, H, [(i % 7) / 7 for i in range(N_FRAMES)],
                                             face_seed=0, speech_seconds=AUDIO_SECONDS, speech_seed=1)
    image = str(root / "face.png")
    import cv2
    cv2.imwrite(image, draw_face(H, W, mouth_open=0.5, seed=1))
    model = Wav2Lip()
    model.load_state_dict(recipe_state_dict(model))
    checkpoint = str(root / "wav2lip_recipe.pth")
    save_checkpoint(checkpoint, model, global_step=1)
    return SimpleNamespace(root=root, video=video, image=image, speech=speech, checkpoint=checkpoint,
                           frames=frames)


class StubDetector:
    """Boxes that depend on each frame's pixels (so both implementations see the same), None on chosen frames."""

    def __init__(self, no_face_at=()):
        self.no_face_at, self.seen, self.device = set(no_face_at), 0, torch.device("cpu")

    def detect_from_batch(self, frames):
        faces = []
        for frame in frames:
            s = int(frame[40:70, 40:90].sum()) // 997
            box = [] if self.seen in self.no_face_at else [[30 + s % 5, 15 + s % 3, 96 - s % 4, 70, 0.9]]
            faces.append(np.array(box, np.float32).reshape(-1, 5))
            self.seen += 1
        return faces

    get_detections_for_batch = FaceAlignment.get_detections_for_batch  # the published algorithm's call


_reference_memo = {}


def reference_frames(checkpoint, face, speech, detector=None, **options):
    """The published algorithm's frames; runs with a fixed --box are computed once per session."""
    if detector is not None:
        return reference_inference.reference_frames(checkpoint, face, speech, detector=detector, **options)
    key = (checkpoint, face, speech, tuple(sorted(options.items())))
    if key not in _reference_memo:
        _reference_memo[key] = reference_inference.reference_frames(checkpoint, face, speech, **options)
    frames, fps = _reference_memo[key]
    return [f.copy() for f in frames], fps


def use_stub(monkeypatch, stub):
    monkeypatch.setattr(streaming, "load_face_detector", lambda device, **options: stub)
    return stub


def run(media, tmp_path, *extra, face=None, audio=None, outfile=None):
    outfile = outfile or str(tmp_path / "out" / "result.mp4")
    stats = inference.main(["--checkpoint_path", media.checkpoint, "--face", face or media.video,
                            "--audio", audio or media.speech, "--outfile", outfile, "--quiet",
                            "--box_cache", str(tmp_path / "cache"), *map(str, extra)])
    return stats, outfile


def assert_frames_equal(actual, expected):
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.shape == e.shape, i
        assert np.array_equal(a, e), f"frame {i}: {np.count_nonzero(a != e)} values differ"


def test_box_writes_mp4_equal_to_reference(media, tmp_path, captured, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stats = inference.main(["--checkpoint_path", media.checkpoint, "--face", media.video,
                            "--audio", media.speech, "--box", *map(str, BOX), "--quiet"])
    outfile = tmp_path / "results" / "result_voice.mp4"
    assert sorted(os.listdir(tmp_path)) == ["results"]  # no temp/ folder, no stray files
    assert os.listdir(tmp_path / "results") == ["result_voice.mp4"]
    assert stats["frames"] == N_OUT and stats["encoded_faces"] == N_FRAMES  # looped frames reuse features
    with videoio.VideoReader(outfile) as video:
        assert (video.width, video.height, round(video.fps)) == (W, H, 25)
        assert sum(1 for _ in video) == N_OUT
    videoio.extract_audio(str(outfile), str(tmp_path / "a.wav"))
    assert abs(len(load_wav(str(tmp_path / "a.wav"), 16000)) / 16000 - AUDIO_SECONDS) < 0.05

    expected, fps = reference_frames(media.checkpoint, media.video, media.speech, box=BOX)
    assert fps == 25
    assert_frames_equal(captured, expected)
    y1, y2, x1, x2 = BOX
    for i, frame in enumerate(captured):
        source = media.frames[i % N_FRAMES]
        changed = np.any(frame != source, axis=2)
        assert changed[y1:y2, x1:x2].any(), i
        changed[y1:y2, x1:x2] = False
        assert not changed.any(), f"frame {i} changed outside the box"


def test_detector_path_equals_reference_and_boxes_are_cached(media, tmp_path, captured, monkeypatch):
    stub = use_stub(monkeypatch, StubDetector())
    # Batches of 5, 5, 2 run as passes of 2+3, 2+3, 2: the frames stay the reference's.
    stats, _ = run(media, tmp_path, "--wav2lip_batch_size", 5, "--face_det_batch_size", 4, "--pass_size", 2)
    assert stub.seen == N_FRAMES and stats["frames"] == N_OUT
    expected, _ = reference_frames(media.checkpoint, media.video, media.speech, detector=StubDetector(),
                                   face_det_batch_size=4, wav2lip_batch_size=5)
    assert_frames_equal(captured, expected)
    assert len(os.listdir(tmp_path / "cache")) == 1

    first = list(captured)
    captured.clear()
    run(media, tmp_path, "--wav2lip_batch_size", 5, "--face_det_batch_size", 4)
    assert stub.seen == N_FRAMES  # boxes came from the cache
    assert_frames_equal(captured, first)

    os.utime(media.video, ns=(os.stat(media.video).st_atime_ns, os.stat(media.video).st_mtime_ns + 10**9))
    run(media, tmp_path, "--wav2lip_batch_size", 5, "--face_det_batch_size", 4)
    assert stub.seen == 2 * N_FRAMES  # a changed file is detected again, never served stale boxes
    run(media, tmp_path, "--no_box_cache", "--nosmooth", "--pads", 0, 0, 0, 0)
    assert stub.seen == 3 * N_FRAMES and len(os.listdir(tmp_path / "cache")) == 2


def test_real_s3fd_with_recipe_weights_equals_reference(media, tmp_path, captured, monkeypatch):
    from face_detection import S3FD, FaceAlignment, api
    weights = str(tmp_path / "s3fd.pth")
    torch.save(recipe_state_dict(S3FD()), weights)
    monkeypatch.setattr(api, "default_weights_path", lambda: weights)
    run(media, tmp_path, "--no_box_cache")
    expected, _ = reference_frames(media.checkpoint, media.video, media.speech,
                                   detector=FaceAlignment(device="cpu", path_to_detector=weights))
    assert_frames_equal(captured, expected)


def test_static_image_reuses_the_encoded_face(media, tmp_path, captured, monkeypatch):
    use_stub(monkeypatch, StubDetector())
    # Batches of 3, 3, 3, 1: the last face is alone, and computed alone, as in the reference.
    stats, outfile = run(media, tmp_path, "--fps", 20, "--wav2lip_batch_size", 3, face=media.image)
    assert stats["encoded_faces"] == 2 and stats["fps"] == 20
    expected, _ = reference_frames(media.checkpoint, media.image, media.speech, detector=StubDetector(),
                                   fps=20., wav2lip_batch_size=3)
    assert len(expected) == 10  # 49 mel frames at 4 per frame
    assert_frames_equal(captured, expected)


def test_static_flag_parses_like_a_flag_or_a_value():
    parser = inference.build_parser()
    required = ["--checkpoint_path", "c", "--face", "f", "--audio", "a"]
    values = {tuple(extra): parser.parse_args(required + extra).static
              for extra in ([], ["--static"], ["--static", "True"], ["--static", "False"], ["--static", "0"])}
    assert values == {(): False, ("--static",): True, ("--static", "True"): True,
                      ("--static", "False"): False, ("--static", "0"): False}


@pytest.mark.parametrize("flag", [["--static", "True"], ["--static", "false"]])
def test_static_flag_values(media, tmp_path, captured, flag):
    stats, _ = run(media, tmp_path, "--box", *BOX, *flag)
    static = flag[-1] != "false"
    assert stats["encoded_faces"] == (1 if static else N_FRAMES)
    if static:
        expected, _ = reference_frames(media.checkpoint, media.video, media.speech, box=BOX, static=True)
        assert_frames_equal(captured, expected)


@pytest.mark.parametrize("options, size", [
    (dict(resize_factor=2, box=(10, 40, 12, 52)), (64, 48)),
    (dict(crop=(8, 88, 16, 112), box=(10, 70, 20, 80)), (96, 80)),
    (dict(rotate=True, box=(20, 100, 10, 80)), (96, 128)),
])
def test_resize_crop_rotate_equal_reference(media, tmp_path, captured, options, size):
    flags = {"resize_factor": ["--resize_factor", options.get("resize_factor")],
             "crop": ["--crop", *options.get("crop", ())], "rotate": ["--rotate"],
             "box": ["--box", *options["box"]]}
    run(media, tmp_path, *[f for name in options for f in flags[name]])
    assert (captured[0].shape[1], captured[0].shape[0]) == size
    expected, _ = reference_frames(media.checkpoint, media.video, media.speech, **options)
    assert_frames_equal(captured, expected)


def test_no_face_is_an_error_naming_the_frame(media, tmp_path, monkeypatch):
    use_stub(monkeypatch, StubDetector(no_face_at={3}))
    with pytest.raises(UserError, match=r"no face detected in frame 3 \(use --box, or --no_face pass"):
        run(media, tmp_path)
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_no_face_pass_leaves_those_frames_unchanged(media, tmp_path, captured, monkeypatch):
    use_stub(monkeypatch, StubDetector(no_face_at={3, 4}))
    stats, _ = run(media, tmp_path, "--no_face", "pass")
    assert stats["frames"] == N_OUT
    for i, frame in enumerate(captured):
        unchanged = np.array_equal(frame, media.frames[i % N_FRAMES])
        assert unchanged == (i in (3, 4)), i


def test_bf16_is_close_to_fp32(media, tmp_path, captured):
    fp32 = [f.astype(np.float64) for f in reference_frames(media.checkpoint, media.video, media.speech, box=BOX)[0]]
    run(media, tmp_path, "--box", *BOX, "--precision", "bf16")
    mse = np.mean([(f.astype(np.float64) - g) ** 2 for f, g in zip(captured, fp32)])
    assert 0 < mse and 10 * np.log10(255 ** 2 / mse) > 35
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        run(media, tmp_path, "--box", *BOX, "--precision", "fp16", "--device", "cpu")


def test_silent_audio_gives_a_video_with_a_warning(media, tmp_path, captured, capsys):
    """All-zero audio is valid input, as in the reference (the mouth stays closed)."""
    silent = write_wav16(tmp_path / "silent.wav", np.zeros(int(AUDIO_SECONDS * 16000)))
    stats, outfile = run(media, tmp_path, "--box", *BOX, audio=silent)
    assert os.path.isfile(outfile) and stats["frames"] == len(captured) == N_OUT
    assert "silent.wav: the audio is silent (all samples zero): the mouth will stay closed" in capsys.readouterr().err


def test_blend_changes_the_mouth_and_nothing_outside_the_mask(media, tmp_path, captured):
    from blending import lower_face_mask
    run(media, tmp_path, "--box", *BOX, "--blend")
    pasted, _ = reference_frames(media.checkpoint, media.video, media.speech, box=BOX)  # the hard paste
    y1, y2, x1, x2 = BOX
    mask = np.zeros((H, W), np.float32)
    mask[y1:y2, x1:x2] = lower_face_mask(y2 - y1, x2 - x1)
    assert mask.max() == 1 and mask[y1:(y1 + y2) // 2 - 6].max() == 0  # the upper face keeps its pixels
    for i, (frame, hard) in enumerate(zip(captured, pasted)):
        source = media.frames[i % N_FRAMES]
        assert np.array_equal(frame[mask == 0], source[mask == 0]), i
        assert np.array_equal(frame[mask == 1], hard[mask == 1]), i  # the core is the generated face
        mouth = (frame[mask == 1] != source[mask == 1]).any(axis=1)
        assert mouth.mean() > 0.5, i
        between = (mask > 0) & (mask < 1)
        low, high = np.minimum(source, hard)[between], np.maximum(source, hard)[between]
        assert ((low <= frame[between]) & (frame[between] <= high)).all(), i  # a fade, never beyond either


def test_cache_keys_hold_the_detection_options(media, tmp_path, monkeypatch):
    import json
    stub, built = StubDetector(), []
    monkeypatch.setattr(streaming, "load_face_detector", lambda device, **options: built.append(options) or stub)
    options = ["--face_select", "largest", "--detect_every", 3, "--detect_max_side", 64]
    run(media, tmp_path, *options)
    assert built == [{"precision": "fp32", "max_side": 64}]
    assert stub.seen == 4  # frames 0, 3, 6 and 9 (the last)
    (entry,) = list((tmp_path / "cache").iterdir())
    with np.load(entry) as data:
        key = json.loads(str(data["key"]))
    assert {k: key[k] for k in ("precision", "max_side", "every", "face_select", "face_point")} == \
        {"precision": "fp32", "max_side": 64, "every": 3, "face_select": "largest", "face_point": None}
    run(media, tmp_path, *options)
    assert stub.seen == 4  # the same options: boxes from the cache
    for other in (["--face_select", "largest", "--detect_every", 3],  # each option changes the key
                  ["--face_select", "largest", "--detect_max_side", 64],
                  ["--detect_every", 3, "--detect_max_side", 64],
                  ["--face_point", 60, 40, "--detect_every", 3, "--detect_max_side", 64]):
        seen = stub.seen
        run(media, tmp_path, *other)
        assert stub.seen > seen, other
    assert len(list((tmp_path / "cache").iterdir())) == 5


def test_paths_with_spaces_and_shell_metacharacters(media, tmp_path):
    odd = tmp_path / "a b;$(touch x)&'q\""
    odd.mkdir()
    face, speech = str(odd / "fa ce;|.mp4"), str(odd / "spe$ech&.wav")
    os.link(media.video, face)
    os.link(media.speech, speech)
    stats, outfile = run(media, tmp_path, "--box", *BOX, face=face, audio=speech,
                         outfile=str(odd / "out put" / "r`x`.mp4"))
    assert os.path.isfile(outfile) and stats["frames"] == N_OUT
    assert not (tmp_path / "x").exists()


def write_bytes(path, data):
    path.write_bytes(data)
    return str(path)


def write_wav16(path, samples):
    from scipy.io import wavfile
    wavfile.write(path, 16000, (np.asarray(samples) * 20000).astype(np.int16))
    return str(path)


@pytest.mark.parametrize("case, message", [
    ("missing face", r"nope\.mp4: file not found \(--face\)"),
    ("unreadable face", r"cannot open as a video"),
    ("missing audio", r"nope\.wav: file not found \(--audio\)"),
    ("unreadable audio", r"bad\.wav: cannot read audio"),
    ("unreadable audio mp3", r"ffmpeg failed to read the audio of .*bad\.mp3"),
    ("missing checkpoint", r"nope\.pth: file not found \(--checkpoint_path\)"),
    ("corrupt checkpoint", r"bad\.pth: not a readable PyTorch checkpoint"),
    ("wrong network", r"does not fit Wav2Lip: .*looks like a S3FD face detector"),
    ("empty audio", r"empty\.wav: .*(empty|non-empty)"),
    ("short audio", r"short\.wav: the audio lasts 0\.100 s, shorter than one mel window"),
    ("image without a face", r"face\.png: no face detected in frame 0"),
    ("box outside the frame", r"face box .* outside frame 0 of 128x96"),
])
def test_bad_input_is_one_clear_error_and_no_output(media, tmp_path, monkeypatch, case, message):
    use_stub(monkeypatch, StubDetector(no_face_at={0}))
    kwargs, extra = {}, []
    if case == "missing face":
        kwargs["face"] = str(tmp_path / "nope.mp4")
    elif case == "unreadable face":
        kwargs["face"] = write_bytes(tmp_path / "text.mp4", b"not a video at all")
    elif case == "missing audio":
        kwargs["audio"] = str(tmp_path / "nope.wav")
    elif case == "unreadable audio":
        kwargs["audio"] = write_bytes(tmp_path / "bad.wav", b"RIFF....garbage")
    elif case == "unreadable audio mp3":
        kwargs["audio"] = write_bytes(tmp_path / "bad.mp3", b"\x00garbage" * 10)
    elif case in ("empty audio", "short audio"):
        name, samples = {"empty audio": ("empty", np.zeros(0)),
                         "short audio": ("short", speech_like_audio(0.1, 16000))}[case]
        kwargs["audio"] = write_wav16(tmp_path / f"{name}.wav", samples)
    elif case == "image without a face":
        kwargs["face"] = media.image
    elif case == "box outside the frame":
        extra = ["--box", 0, 50, 100, 140]
    checkpoint = media.checkpoint
    if case == "missing checkpoint":
        checkpoint = str(tmp_path / "nope.pth")
    elif case == "corrupt checkpoint":
        checkpoint = write_bytes(tmp_path / "bad.pth", b"PK\x03\x04 truncated")
    elif case == "wrong network":
        checkpoint = str(tmp_path / "s3fd_like.pth")
        torch.save({"conv1_1.weight": torch.zeros(64, 3, 3, 3)}, checkpoint)
    outfile = tmp_path / "out" / "result.mp4"
    with pytest.raises(UserError, match=message):
        inference.main(["--checkpoint_path", checkpoint, "--face", kwargs.get("face", media.video),
                        "--audio", kwargs.get("audio", media.speech), "--outfile", str(outfile),
                        "--quiet", "--no_box_cache", *map(str, extra)])
    assert not outfile.exists() and (not outfile.parent.exists() or os.listdir(outfile.parent) == [])


def test_cli_error_is_one_line_exit_1(media, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, os.path.join(root, "inference.py"), "--checkpoint_path",
                             media.checkpoint, "--face", media.video, "--audio", str(tmp_path / "no $pe ch.wav"),
                             "--outfile", str(tmp_path / "o.mp4")], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'no $pe ch.wav'}: file not found (--audio)"]
    assert os.listdir(tmp_path) == []
