"""Which face (--face_select, --face_point) and detection on every Nth frame (--detect_every).

Detections are injected below S3FD (a detector whose detect_from_batch returns the faces drawn
in each frame), so the faces are exactly where they were drawn; the CLI runs inference.py.
"""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import inference
import streaming
import videoio
from audio import save_wav
from checkpoints import save_checkpoint
from cli import UserError
from face_detection import BatchedDetection, FaceChooser, FaceTrack
from face_detection.tracking import interpolated, iou
from models import Wav2Lip
from synthetic import draw_face, paint_face, recipe_state_dict, speech_like_audio

W, H, N_FRAMES = 192, 128, 12
INDEX_BLOCK, INDEX_STEP = 16, 20  # a flat grey block in the top-left corner: 20 * frame index (survives H.264)


def big_box(i):
    return (10 + 2 * i, 20, 80 + 2 * i, 104)  # 70x84, moving right


def small_box(i):
    return (150 - 2 * i, 40, 186 - 2 * i, 84)  # 36x44, moving left


def two_face_frame(i):
    frame = draw_face(H, W, mouth_open=(i % 5) / 5, box=big_box(i), seed=2)
    paint_face(frame, small_box(i), mouth_open=((i + 2) % 5) / 5)
    frame[:INDEX_BLOCK, :INDEX_BLOCK] = INDEX_STEP * i
    return frame


class DrawnFaces:
    """Stands in for FaceAlignment: every face drawn in the frame, read from the frame's index block.

    faces(i) -> [(x1, y1, x2, y2, score), ...] in any order; they are returned best first.
    """

    def __init__(self, faces, step=INDEX_STEP):
        self.faces, self.step, self.device, self.detected = faces, step, torch.device("cpu"), []

    def detect_from_batch(self, frames):
        out = []
        for frame in frames:
            index = int(round(frame[:INDEX_BLOCK, :INDEX_BLOCK].mean() / self.step))
            self.detected.append(index)
            faces = np.array(self.faces(index), np.float32).reshape(-1, 5)
            out.append(faces[np.argsort(-faces[:, 4], kind="stable")])
        return out


def alternating(i):
    """Both faces; the small one scores higher on odd frames (the reference's choice jumps)."""
    big, small = (0.9, 0.7) if i % 2 == 0 else (0.7, 0.9)
    return [(*big_box(i), big), (*small_box(i), small)]


def test_chooser_rules():
    faces = np.array([[100, 10, 120, 30, 0.95], [0, 0, 60, 60, 0.8], [-5, 70, 40, 110, 0.6]], np.float32)
    assert FaceChooser("score")(faces) == (100, 10, 120, 30)
    assert FaceChooser("largest")(faces) == (0, 0, 60, 60)
    assert FaceChooser("largest")(np.zeros((0, 5), np.float32)) is None
    chooser = FaceChooser(point=(10, 90))
    assert chooser(faces[:2]) is None  # not there yet
    assert chooser(faces) == (0, 70, 40, 110)  # the face containing the point; negatives clipped
    moved = faces + np.array([3, 4, 3, 4, 0], np.float32)
    assert chooser(moved[::-1]) == (0, 74, 43, 114)  # followed by overlap, whatever the order
    assert chooser(moved[:2]) is None  # lost
    assert chooser(moved[:2]) is None and chooser(moved) == (0, 74, 43, 114)  # back where it was lost
    assert chooser(np.array([[200, 200, 240, 240, 0.99]], np.float32)) is None  # another face: no
    with pytest.raises(ValueError, match="rule"):
        FaceChooser("nearest")


def test_iou_and_interpolation():
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0
    assert interpolated((0, 0, 10, 10), (8, 4, 18, 14), 3) == [(2, 1, 12, 11), (4, 2, 14, 12), (6, 3, 16, 13)]


def track(faces, every, rule="score", point=None, batch=4, n=21):
    detector = DrawnFaces(faces, step=1)
    frames = [np.full((8, 8, 3), i, np.uint8) for i in range(n)]  # only the index matters
    stream = FaceTrack(BatchedDetection(detector, batch), FaceChooser(rule, point), every).stream(iter(frames))
    rects = []
    for k, (frame, rect) in enumerate(stream):
        assert frame is frames[k]
        rects.append(rect)
    assert len(rects) == n
    return rects, detector.detected


def test_detect_every_interpolates_linear_motion_exactly():
    faces = lambda i: [(*big_box(i), 0.9)]  # noqa: E731
    every_frame, detected = track(faces, 1)
    assert detected == list(range(21)) and every_frame == [big_box(i) for i in range(21)]
    for every, keys in ((5, [0, 5, 10, 15, 20]), (3, [0, 3, 6, 9, 12, 15, 18, 20]), (8, [0, 8, 16, 20])):
        rects, detected = track(faces, every)
        assert sorted(detected) == keys  # and the last frame, to close the tail
        assert rects == every_frame


def test_detect_every_error_on_curved_motion_is_bounded():
    """A face swaying 20 px each way over 2 s (50 frames), its size breathing by 10% (3 px) over
    1.6 s: interpolated between every Nth frame, box edges stay within max|acceleration| * N**2 / 8
    + 1 px (rounding) of the per-frame boxes. Measured: at most 1 px (mean 0.28) for N = 5,
    1 px (0.10) for N = 3."""
    def sway(i):
        x = 60 + 20 * np.sin(2 * np.pi * i / 50)
        half = 30 * (1 + 0.1 * np.sin(2 * np.pi * i / 40))
        return [(x - half, 30, x + half, 30 + 2 * half, 0.9)]

    acceleration = 20 * (2 * np.pi / 50) ** 2 + 3 * (2 * np.pi / 40) ** 2  # px per frame squared
    truth, _ = track(sway, 1, n=50)
    for every, measured in ((5, 1), (3, 1)):
        rects, detected = track(sway, every, n=50)
        assert len(detected) == len(range(0, 50, every)) + 1
        error = np.abs(np.array(rects) - np.array(truth)).max()
        assert error == measured <= acceleration * every ** 2 / 8 + 1


def test_detect_every_detects_the_frames_between_a_switch_or_a_loss():
    # The highest score jumps between two faces: every frame between keys is detected, so the
    # boxes are exactly the every-frame ones.
    every_frame, _ = track(alternating, 1, n=19)
    rects, detected = track(alternating, 3, n=19)  # keys 0, 3, 6, ... alternate faces
    assert rects == every_frame and sorted(detected) == list(range(19))
    # No face on frame 8 (a key): frames 5..7 and 9..11 are detected, the rest interpolated.
    missing = lambda i: [] if i == 8 else [(*big_box(i), 0.9)]  # noqa: E731
    rects, detected = track(missing, 4, batch=8)
    assert rects == [None if i == 8 else big_box(i) for i in range(21)]
    assert sorted(detected) == [0, 4, 5, 6, 7, 8, 9, 10, 11, 12, 16, 20]


def test_largest_and_point_keep_their_face():
    by_score, _ = track(alternating, 1)
    assert by_score[0] == big_box(0) and by_score[1] == small_box(1)  # the reference's choice jumps
    assert track(alternating, 1, rule="largest")[0] == [big_box(i) for i in range(21)]
    assert track(alternating, 3, point=(160, 60))[0] == [small_box(i) for i in range(21)]
    assert track(alternating, 1, point=(5, 5))[0] == [None] * 21  # no face there


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    root = tmp_path_factory.mktemp("two_faces")
    video = str(root / "two faces.mp4")
    with videoio.VideoWriter(video, 25, W, H) as out:
        for i in range(N_FRAMES):
            out.write(two_face_frame(i))
    speech = str(root / "speech.wav")
    save_wav(speech_like_audio(0.6, 16000, seed=3), speech, 16000)  # 12 output frames
    model = Wav2Lip()
    model.load_state_dict(recipe_state_dict(model))
    checkpoint = str(root / "wav2lip_recipe.pth")
    save_checkpoint(checkpoint, model, global_step=1)
    frames = list(videoio.VideoReader(video))
    return SimpleNamespace(root=root, video=video, speech=speech, checkpoint=checkpoint, frames=frames)


def dub(two_faces, tmp_path, monkeypatch, *flags):
    detector = DrawnFaces(alternating)
    monkeypatch.setattr(streaming, "load_face_detector", lambda device, **options: detector)
    inference.main(["--checkpoint_path", two_faces.checkpoint, "--face", two_faces.video,
                    "--audio", two_faces.speech, "--outfile", str(tmp_path / "out.mp4"), "--quiet",
                    "--no_box_cache", *map(str, flags)])
    return detector


def changed(captured, two_faces, box_of):
    """Per output frame, whether any pixel changed inside the face's drawn box."""
    out = []
    for i, frame in enumerate(captured):
        x1, y1, x2, y2 = box_of(i)
        out.append(bool(np.any(frame[y1:y2, x1:x2] != two_faces.frames[i][y1:y2, x1:x2])))
    return out


@pytest.mark.parametrize("flags, kept, left", [
    (["--face_select", "largest"], big_box, small_box),
    (["--face_point", 165, 60, "--detect_every", 3], small_box, big_box),
])
def test_cli_dubs_the_chosen_face_only(two_faces, tmp_path, monkeypatch, captured, flags, kept, left):
    detector = dub(two_faces, tmp_path, monkeypatch, *flags)
    assert len(captured) == N_FRAMES
    assert changed(captured, two_faces, kept) == [True] * N_FRAMES
    assert changed(captured, two_faces, left) == [False] * N_FRAMES
    if "--detect_every" in flags:
        assert sorted(detector.detected) == [0, 3, 6, 9, 11]


def test_cli_face_point_errors(two_faces, tmp_path, monkeypatch):
    with pytest.raises(UserError, match=r"the face at --face_point 5 5 is not found in frame 0 \(use --no_face pass"):
        dub(two_faces, tmp_path, monkeypatch, "--face_point", 5, 5)
    with pytest.raises(UserError, match=r"--face_point 500 5 is outside the 192x128 frame"):
        dub(two_faces, tmp_path, monkeypatch, "--face_point", 500, 5)
    with pytest.raises(UserError, match="give one of them"):
        dub(two_faces, tmp_path, monkeypatch, "--face_point", 5, 5, "--face_select", "largest")
    with pytest.raises(UserError, match="--detect_every must be at least 1"):
        dub(two_faces, tmp_path, monkeypatch, "--detect_every", 0)
    with pytest.raises(UserError, match="--detect_max_side must be at least 32 pixels"):
        dub(two_faces, tmp_path, monkeypatch, "--detect_max_side", 16)
