"""FID: pytorch-fid's InceptionV3 and distance against golden outputs; weight files; the CLI.

The golden outputs were computed by pytorch-fid on the recipe weights
(EVALUATION.md); the CLI runs on those weights written to a temporary file.
"""
import json
import os
import subprocess
import sys
import urllib.error

import cv2
import numpy as np
import pytest
import torch

import fileio
from checkpoints import CheckpointError
from cli import UserError
from evaluation import fid
from evaluation.inception import FID_WEIGHTS_URL, FIDInceptionV3, load_inception
from models import SyncNet_color
from synthetic import recipe_state_dict, talking_face_clip
from videoio import run_ffmpeg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
SCRIPT = os.path.join(ROOT, "evaluation", "fid.py")


@pytest.fixture(scope="module")
def golden():
    return np.load(os.path.join(FIXTURES, "evaluation_fid.npz"))


@pytest.fixture(scope="module")
def recipe_state():
    return recipe_state_dict(FIDInceptionV3(), evaluation=True)


@pytest.fixture(scope="module")
def weights(tmp_path_factory, recipe_state):
    """The recipe weights as the published file is: a bare state dict, legacy serialization."""
    path = tmp_path_factory.mktemp("weights") / "pt_inception-recipe.pth"
    torch.save(recipe_state, path, _use_new_zipfile_serialization=False)
    return str(path)


@pytest.fixture(scope="module")
def model(weights):
    return load_inception(weights, "cpu")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Four 64x64 frames as PNG files, as one lossless video, and as two lossless videos."""
    root = tmp_path_factory.mktemp("media")
    _, frames = talking_face_clip(0.16, size=64, seed=3)  # 4 BGR frames
    images = root / "images"
    images.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(images / f"{i:03d}.png"), frame)
    videos = root / "videos"
    videos.mkdir()

    def encode(out, start, count):  # FFV1 in BGR: decodes to the very same pixels
        run_ffmpeg(["-framerate", "25", "-start_number", start, "-i", images / "%03d.png",
                    "-frames:v", count, "-c:v", "ffv1", "-pix_fmt", "bgr0", out], "in the test")

    encode(root / "clip.mkv", 0, 4)
    encode(videos / "a.mkv", 0, 2)
    encode(videos / "b.mkv", 2, 2)
    rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]
    return {"rgb": rgb, "images": str(images), "video": str(root / "clip.mkv"), "videos": str(videos)}


def features(model, frames):
    with torch.inference_mode():
        return model.pool3(fid.frames_to_input(frames, "cpu")).numpy()


def test_names_and_shapes_are_the_published_files():
    with open(os.path.join(FIXTURES, "evaluation_keys_fid.json")) as f:
        published = json.load(f)
    state = FIDInceptionV3().state_dict()
    assert sorted(state) == sorted(published)
    for name, (shape, dtype) in published.items():
        assert list(state[name].shape) == shape and str(state[name].dtype) == f"torch.{dtype}", name


def test_features_reproduce_pytorch_fid(golden, recipe_state, model):
    images = golden["fid_in_images_rgb"]  # (4, 96, 96, 3) uint8 RGB
    reference = FIDInceptionV3()
    reference.load_state_dict(recipe_state, strict=True)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255  # as ToTensor
    with torch.inference_mode():
        published_layout = reference.eval()(x).numpy()
    np.testing.assert_allclose(published_layout, golden["fid_out_pool3"], rtol=0, atol=1e-4)
    # The scoring path: uint8 frames, folded batch norms, channels_last.
    np.testing.assert_allclose(features(model, list(images)), golden["fid_out_pool3"], rtol=0, atol=1e-4)


def bilinear_half_pixel(image, size):
    """numpy bilinear resize of (H, W) with pixel centres at +0.5 (align_corners=False)."""
    def taps(n_in):
        src = np.maximum((np.arange(size) + 0.5) * n_in / size - 0.5, 0)
        i0 = np.floor(src).astype(int)
        return i0, np.minimum(i0 + 1, n_in - 1), src - i0
    r0, r1, wr = taps(image.shape[0])
    c0, c1, wc = taps(image.shape[1])
    rows = image[r0] * (1 - wr)[:, None] + image[r1] * wr[:, None]
    return rows[:, c0] * (1 - wc) + rows[:, c1] * wc


def test_input_is_rgb_over_255_resized_half_pixel_then_scaled():
    frame = np.random.RandomState(2).randint(0, 256, (7, 5, 3), np.uint8)  # RGB
    x = fid.frames_to_input([frame], "cpu").numpy()
    assert x.shape == (1, 3, 299, 299)
    for channel in range(3):
        expected = 2 * bilinear_half_pixel(frame[:, :, channel] / 255.0, 299) - 1
        np.testing.assert_allclose(x[0, channel], expected, rtol=0, atol=1e-5)


def test_frames_of_mixed_sizes_are_each_resized(model):
    rng = np.random.RandomState(0)
    frames = [rng.randint(0, 256, shape, np.uint8) for shape in [(40, 40, 3), (40, 40, 3), (30, 50, 3)]]
    together = features(model, frames)
    alone = np.concatenate([features(model, [f]) for f in frames])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5)


def test_distance_reproduces_pytorch_fid(golden):
    a, b = golden["fid_in_feats_a"], golden["fid_in_feats_b"]
    value = fid.frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert value == pytest.approx(float(golden["fid_out_distance"]), rel=1e-9)
    same = fid.frechet_distance(a.mean(0), np.cov(a, rowvar=False), a.mean(0), np.cov(a, rowvar=False))
    assert abs(same) < 1e-9


def test_distance_retries_with_eps_and_rejects_imaginary_roots(monkeypatch, capsys):
    with pytest.raises(ValueError, match="Imaginary component"):  # sqrtm(diag(1, -1)) = diag(1, i)
        fid.frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))
    seen, sqrtm = [], fid._sqrtm
    monkeypatch.setattr(fid, "_sqrtm", lambda m: seen.append(m) or (np.full_like(m, np.nan) if len(seen) == 1
                                                                     else sqrtm(m)))
    sigma = np.diag([4.0, 0.0])
    value = fid.frechet_distance(np.zeros(2), sigma, np.ones(2), sigma)
    np.testing.assert_allclose(seen[1], np.diag([4 + 1e-6, 1e-6]) @ np.diag([4 + 1e-6, 1e-6]))
    assert value == pytest.approx(2 + 4 + 4 - 2 * (4 + 1e-6 + 1e-6))
    assert "adding 1e-06 to diagonal" in capsys.readouterr().err


def test_running_statistics_equal_numpy():
    rng = np.random.RandomState(1)
    rows = 50 + rng.standard_normal((203, 64)) * rng.uniform(0.01, 3, 64)  # large mean, mixed scales
    stats = fid.FeatureStatistics()
    for start, end in [(0, 50), (50, 51), (51, 150), (150, 203)]:
        stats.update(rows[start:end].astype(np.float32))
    rows32 = rows.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(stats.mean(), rows32.mean(0), rtol=1e-12, atol=0)
    np.testing.assert_allclose(stats.covariance(), np.cov(rows32, rowvar=False), rtol=0, atol=1e-11)
    assert stats.count == 203


@pytest.mark.parametrize("with_counters", [True, False], ids=["num_batches_tracked", "without"])
def test_published_format_loads_strict(tmp_path, recipe_state, with_counters):
    state = {k: v for k, v in recipe_state.items() if with_counters or "num_batches_tracked" not in k}
    path = tmp_path / "pt_inception.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    net = load_inception(path, "cpu", fast=False)
    for name, value in recipe_state.items():
        assert torch.equal(net.state_dict()[name], value), name


@pytest.mark.parametrize("variant", ["syncnet", "torchvision"])
def test_a_file_of_another_network_is_a_one_line_error(tmp_path, recipe_state, variant):
    if variant == "syncnet":
        state = recipe_state_dict(SyncNet_color())
    else:  # torchvision's Inception3: an auxiliary head and 1000 classes
        state = dict(recipe_state, **{"AuxLogits.fc.weight": torch.zeros(1000, 768)})
        state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    path = tmp_path / "other.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as e:
        load_inception(path, "cpu")
    message = str(e.value)
    assert "\n" not in message and str(path) in message and "does not fit FIDInceptionV3" in message
    assert ("SyncNet_color" in message) if variant == "syncnet" else ("AuxLogits.fc.weight" in message)


class BrokenResponse:
    """A download that stops after its first megabyte."""

    def __init__(self):
        self.sent = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, size):
        if self.sent:
            raise ConnectionResetError("connection reset by peer")
        self.sent = True
        return b"\0" * size


@pytest.mark.parametrize("failure", ["offline", "broken transfer"])
def test_missing_weights_offline_is_one_line_naming_url_and_path(tmp_path, monkeypatch, failure):
    if failure == "offline":
        def offline(url, path):
            raise urllib.error.URLError("no network")
        monkeypatch.setattr(fileio, "download", offline)
    else:
        monkeypatch.setattr(fileio.urllib.request, "urlopen", lambda url, timeout: BrokenResponse())
    path = tmp_path / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    with pytest.raises(UserError) as e:
        load_inception(path, "cpu")
    message = str(e.value)
    assert "\n" not in message and FID_WEIGHTS_URL in message and str(path) in message
    assert not path.parent.exists() or os.listdir(path.parent) == []  # no partial file


def test_folder_video_and_folder_of_videos_give_the_same_statistics(model, media):
    expected = features(model, media["rgb"]).astype(np.float64)
    for key in ("images", "video", "videos"):
        frames = list(fid.Sources(media[key]).frames())
        assert len(frames) == 4 and all(np.array_equal(a, b) for a, b in zip(frames, media["rgb"])), key
        mu, sigma, failures = fid.path_statistics(media[key], model, batch_size=3, progress=False)
        assert failures == []
        np.testing.assert_allclose(mu, expected.mean(0), rtol=0, atol=1e-6, err_msg=key)
        np.testing.assert_allclose(sigma, np.cov(expected, rowvar=False), rtol=0, atol=1e-7, err_msg=key)


def test_cli_save_stats_then_fid_of_identical_folders(tmp_path, weights, media, monkeypatch, capsys):
    out = tmp_path / "stats.npz"
    fid.main(["--save_stats", media["videos"], str(out), "--weights", weights, "--num_workers", "0"])
    saved = np.load(out)
    mu, sigma, _ = fid.path_statistics(media["images"], load_inception(weights), progress=False)
    np.testing.assert_allclose(saved["mu"], mu, rtol=0, atol=1e-6)
    np.testing.assert_allclose(saved["sigma"], sigma, rtol=0, atol=1e-7)
    # sqrtm of a 2048x2048 product takes ~30 s on 2 cores: the distance itself is checked
    # on 16-d statistics below; here, that both folders reach it with equal statistics.
    seen = []
    monkeypatch.setattr(fid, "frechet_distance", lambda *stats: seen.append(stats) or 0.0)
    fid.main([media["images"], media["images"], "--weights", weights, "--batch_size", "2"])
    mu1, sigma1, mu2, sigma2 = seen[0]
    assert np.array_equal(mu1, mu2) and np.array_equal(sigma1, sigma2)
    np.testing.assert_allclose(mu1, mu, rtol=0, atol=1e-6)
    assert capsys.readouterr().out == "FID:  0.0\n"


def test_cli_goes_on_past_an_unreadable_video_and_fails_at_the_end(tmp_path, weights, media, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    os.link(os.path.join(media["videos"], "a.mkv"), videos / "a.mkv")
    (videos / "b.mp4").write_bytes(b"not a video")
    out = tmp_path / "stats.npz"
    with pytest.raises(SystemExit) as e:
        fid.run_main(fid.main, ["--save_stats", str(videos), str(out), "--weights", weights])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert f"error: {videos / 'b.mp4'}: cannot open as a video (skipped)" in err
    assert err.strip().splitlines()[-1].startswith("error: 1 files could not be read")
    mu, _, _ = fid.path_statistics(os.path.join(media["videos"], "a.mkv"), load_inception(weights),
                                   progress=False)
    np.testing.assert_allclose(np.load(out)["mu"], mu, rtol=0, atol=1e-6)


def run_script(*args, cwd):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_script_distance_of_saved_statistics(tmp_path, golden):
    for name in ("a", "b"):
        rows = golden[f"fid_in_feats_{name}"]
        np.savez(tmp_path / f"{name}.npz", mu=rows.mean(0), sigma=np.cov(rows, rowvar=False))
    result = run_script(tmp_path / "a.npz", tmp_path / "b.npz", cwd=tmp_path)  # not the repo root
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("FID:  ")
    assert float(result.stdout.split()[1]) == pytest.approx(float(golden["fid_out_distance"]), rel=1e-9)
    same = run_script(tmp_path / "a.npz", tmp_path / "a.npz", cwd=tmp_path)
    assert abs(float(same.stdout.split()[1])) < 1e-6


@pytest.mark.parametrize("case", ["missing", "empty folder", "no media", "garbage video",
                                  "not statistics", "empty npz", "stats exist", "bad device"])
def test_script_bad_input_is_one_line_and_exit_1(tmp_path, case):
    folder = tmp_path / "folder"
    folder.mkdir()
    np.savez(tmp_path / "stats.npz", mu=np.zeros(3), sigma=np.eye(3))
    if case == "missing":
        args, expected = [tmp_path / "nope", folder], f"{tmp_path / 'nope'}: no such file or folder"
    elif case == "empty folder":
        args, expected = [tmp_path / "stats.npz", folder], f"{folder}: no images or videos"
    elif case == "no media":
        (folder / "notes.txt").write_text("frames elsewhere")
        (folder / "sub").mkdir()
        args, expected = [folder, tmp_path / "stats.npz"], f"{folder}: no images or videos"
    elif case == "garbage video":
        (tmp_path / "clip.mp4").write_bytes(b"\0" * 100)
        args, expected = [tmp_path / "clip.mp4", folder], f"{tmp_path / 'clip.mp4'}: cannot open as a video"
    elif case == "not statistics":
        np.savez(tmp_path / "other.npz", x=np.zeros(3))
        args, expected = [tmp_path / "other.npz", tmp_path / "stats.npz"], "not FID statistics"
    elif case == "empty npz":
        (tmp_path / "empty.npz").write_bytes(b"")
        args, expected = [tmp_path / "stats.npz", tmp_path / "empty.npz"], "cannot read as .npz"
    elif case == "stats exist":
        args, expected = ["--save_stats", folder, tmp_path / "stats.npz"], "already exists"
    else:
        (folder / "0.png").write_bytes(b"")
        args, expected = [folder, folder, "--device", "tpu"], "unknown device 'tpu'"
    result = run_script(*args, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert result.stdout == ""
