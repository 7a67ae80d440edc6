"""inference.py --enhance gfpgan: the square around the box, the lower-face blend, the flag end to end."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import enhancer
import inference
from audio import save_wav
from blending import lower_face_mask
from cli import UserError
from enhancer import FACE_CENTRE, FACE_SCALE, PAD_BGR, crop_square, enhance_frames, face_square
from synthetic import speech_like_audio
from test_inference import BOX, H, N_OUT, W, media, reference_frames, run  # noqa: F401 (fixture)


class Inverter(nn.Module):
    """Stands in for GFPGAN: the negated input (255 - pixel after restore's round trip); records its calls."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1))
        self.calls = []

    def forward(self, x, return_rgb=True, randomize_noise=False):
        self.calls.append(dict(batch=x.shape[0], dtype=torch.get_autocast_dtype("cpu")
                               if torch.is_autocast_enabled("cpu") else x.dtype, noise=randomize_noise))
        return -x, []


def frame_mask(shape, coords):
    """lower_face_mask placed over the box in a frame of `shape`, zero elsewhere."""
    y1, y2, x1, x2 = coords
    mask = np.zeros(shape[:2], np.float32)
    mask[y1:y2, x1:x2] = lower_face_mask(y2 - y1, x2 - x1)
    return mask


@pytest.mark.parametrize("coords", [(20, 80, 30, 100), (40, 360, 100, 380), (0, 50, 0, 31), (7, 8, 3, 5)])
def test_face_square_frames_the_box(coords):
    y1, y2, x1, x2 = coords
    top, bottom, left, right = face_square(coords)
    side = bottom - top
    assert right - left == side == max(round(FACE_SCALE * max(y2 - y1, x2 - x1)), y2 - y1, x2 - x1)
    assert top <= y1 < y2 <= bottom and left <= x1 < x2 <= right  # the box is inside the square
    assert abs((y1 + y2) / 2 - (top + FACE_CENTRE * side)) <= 1    # its centre 0.55 of the way down
    assert abs((x1 + x2) / 2 - (left + side / 2)) <= 1              # and centred across


def test_crop_square_pads_outside_the_frame():
    frame = np.random.RandomState(0).randint(0, 256, (40, 50, 3)).astype(np.uint8)
    crop = crop_square(frame, (-5, 25, 30, 60))
    assert crop.shape == (30, 30, 3)
    assert np.array_equal(crop[5:, :20], frame[0:25, 30:50])
    assert (crop[:5] == PAD_BGR).all() and (crop[:, 20:] == PAD_BGR).all()


def test_enhance_frames_changes_only_the_lower_face_in_batches():
    rng = np.random.RandomState(1)
    coords = (40, 360, 100, 380)  # longer side 320: a 512 square, so restore's resizes are exact
    frames = [rng.randint(0, 256, (400, 600, 3)).astype(np.uint8) for _ in range(7)]
    boxes = [coords, None, coords, coords, None, coords, coords]
    model = Inverter()
    out = list(enhance_frames(zip([f.copy() for f in frames], boxes), model, batch_size=2))
    assert [c["batch"] for c in model.calls] == [2, 2, 1]
    assert all(c["dtype"] == torch.float32 and not c["noise"] for c in model.calls)
    mask = frame_mask(frames[0].shape, coords)
    between = (mask > 0) & (mask < 1)
    for frame, result, box in zip(frames, out, boxes):
        if box is None:
            assert np.array_equal(result, frame)
            continue
        assert np.array_equal(result[mask == 0], frame[mask == 0])         # eyes, hair, background
        assert np.array_equal(result[mask == 1], 255 - frame[mask == 1])   # the core is the restored face
        low, high = np.minimum(frame, 255 - frame)[between], np.maximum(frame, 255 - frame)[between]
        assert ((low <= result[between]) & (result[between] <= high)).all()


def test_enhance_frames_holds_a_bounded_number_of_frames():
    frame, pulled = np.zeros((96, 128, 3), np.uint8), []

    def faceless():  # --no_face pass over a long stretch without a face
        for i in range(1000):
            pulled.append(i)
            yield frame, None
    model = Inverter()
    stream = enhance_frames(faceless(), model, batch_size=2)
    next(stream)
    assert len(pulled) == 8  # 4 x batch_size
    assert sum(1 for _ in stream) == 999 and model.calls == []


def test_enhance_frames_passes_the_dtype_and_keeps_the_input_frames():
    frame = np.full((96, 128, 3), 90, np.uint8)
    model = Inverter()
    out = list(enhance_frames([(frame, (20, 80, 30, 100))], model, dtype=torch.bfloat16))
    assert model.calls[0]["dtype"] == torch.bfloat16
    assert (frame == 90).all() and not np.array_equal(out[0], frame)  # a copy is changed, not the input


def test_flag_end_to_end_with_a_stand_in(media, tmp_path, captured, monkeypatch):
    model = Inverter()
    monkeypatch.setattr(enhancer, "load_gfpgan", lambda path, device: model)
    stats, outfile = run(media, tmp_path, "--box", *BOX, "--enhance", "gfpgan", "--enhance_batch", 5)
    assert stats["frames"] == N_OUT and os.path.isfile(outfile) and stats["stage_seconds"]["enhance"] > 0
    assert [c["batch"] for c in model.calls] == [5, 5, 2]
    pasted, _ = reference_frames(media.checkpoint, media.video, media.speech, box=BOX)  # before the pass
    mask = frame_mask((H, W), BOX)
    for i, (frame, dubbed) in enumerate(zip(captured, pasted)):
        assert np.array_equal(frame[mask == 0], dubbed[mask == 0]), i
        core = frame[mask == 1].astype(int)
        assert (core != dubbed[mask == 1]).any(axis=1).mean() > 0.9, i
        assert np.abs(core - (255 - dubbed[mask == 1].astype(int))).mean() < 12, i  # the restored face


def test_flag_with_bf16_runs_the_enhancer_in_bf16(media, tmp_path, captured, monkeypatch):
    model = Inverter()
    monkeypatch.setattr(enhancer, "load_gfpgan", lambda path, device: model)
    run(media, tmp_path, "--box", *BOX, "--enhance", "gfpgan", "--precision", "bf16")
    assert len(captured) == N_OUT and {c["dtype"] for c in model.calls} == {torch.bfloat16}


@pytest.fixture(scope="module")
def gfpgan_file(tmp_path_factory):
    """The published layout ({"params_ema": state}) with models.gfpgan's recipe weights (348 MB, ~5 s)."""
    from models.gfpgan import GFPGANv1Clean, recipe_state_dict
    with torch.device("meta"):
        model = GFPGANv1Clean()
    path = tmp_path_factory.mktemp("gfpgan") / "GFPGANv1.4.pth"
    torch.save({"params_ema": recipe_state_dict(model)}, path)
    return str(path)


def test_real_gfpgan_end_to_end(media, gfpgan_file, tmp_path, captured):
    speech = str(tmp_path / "short.wav")  # 17 mel frames: 2 output frames, 2 GFPGAN faces
    save_wav(speech_like_audio(0.2, 16000, seed=2), speech, 16000)
    stats, _ = run(media, tmp_path, "--box", *BOX, "--enhance", "gfpgan", "--enhancer_path", gfpgan_file,
                   "--enhance_batch", 2, audio=speech)
    pasted, _ = reference_frames(media.checkpoint, media.video, speech, box=BOX)
    assert stats["frames"] == len(pasted) == len(captured) == 2
    mask = frame_mask((H, W), BOX)
    for frame, dubbed in zip(captured, pasted):
        assert np.array_equal(frame[mask == 0], dubbed[mask == 0])
        assert (frame[mask == 1] != dubbed[mask == 1]).any(axis=1).mean() > 0.5


def bad_gfpgan_file(tmp_path, case):
    path = tmp_path / f"{case}.pth"
    if case == "missing":
        return str(path), "GFPGAN weights not found"
    if case == "truncated":
        full = tmp_path / "full.pth"
        torch.save({"params_ema": {"w": torch.arange(10_000.0)}}, full)
        path.write_bytes(full.read_bytes()[:20_000])
        return str(path), "not a readable PyTorch checkpoint"
    torch.save({"params_ema": {"conv_body_first.weight": torch.zeros(16, 3, 1, 1)}}, path)
    return str(path), "does not fit GFPGANv1Clean"


@pytest.mark.parametrize("case", ["missing", "truncated", "mismatched"])
def test_bad_weight_file_fails_before_any_work(media, tmp_path, monkeypatch, case):
    path, message = bad_gfpgan_file(tmp_path, case)

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the enhancer was checked")
    monkeypatch.setattr(inference, "load_mel", no_work)
    monkeypatch.setattr(inference, "build_runner", no_work)
    with pytest.raises(UserError, match=f"^{path}: {message}") as e:
        run(media, tmp_path, "--box", *BOX, "--enhance", "gfpgan", "--enhancer_path", path)
    assert "\n" not in str(e.value) and not (tmp_path / "out").exists()


def test_bad_weight_file_is_one_line_exit_1(media, tmp_path):
    path, message = bad_gfpgan_file(tmp_path, "mismatched")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, os.path.join(root, "inference.py"), "--checkpoint_path",
                             media.checkpoint, "--face", media.video, "--audio", media.speech,
                             "--outfile", str(tmp_path / "o.mp4"), "--enhance", "gfpgan", "--enhancer_path", path],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {message}"), result.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_enhancer_path_without_enhance_is_an_error(media, tmp_path):
    with pytest.raises(UserError, match="--enhancer_path is for --enhance gfpgan"):
        run(media, tmp_path, "--box", *BOX, "--enhancer_path", "x.pth")
