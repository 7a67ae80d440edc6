"""LSE-D / LSE-C: syncnet_python's SyncNet, its MFCC and scoring arithmetic against the golden outputs,
the published weight file, the alignment of audio and video windows, and the scoring CLI."""
import csv
import json
import os
import subprocess
import sys
import urllib.error

import numpy as np
import pytest
import torch

import fileio
import videoio
from audio import save_wav
from cli import UserError
from conftest import FIXTURES, ROOT
from evaluation import lse
from evaluation.syncnet import SyncNet, load_syncnet
from synthetic import recipe_state_dict, speech_like_audio, write_talking_video

SCORES_LRS = os.path.join(ROOT, "evaluation", "scores_LSE", "calculate_scores_LRS.py")


@pytest.fixture(scope="module")
def golden():
    return np.load(os.path.join(FIXTURES, "evaluation_syncnet.npz"))


@pytest.fixture(scope="module")
def syncnet():
    net = SyncNet()
    net.load_state_dict(recipe_state_dict(net, evaluation=True))
    return net.eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory, syncnet):
    """The recipe SyncNet written as the published file is: a bare state dict."""
    path = str(tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model")
    torch.save(syncnet.state_dict(), path)
    return path


def test_state_dict_matches_the_published_file():
    with open(os.path.join(FIXTURES, "evaluation_keys_syncnet.json")) as f:
        published = json.load(f)
    state = SyncNet().state_dict()
    assert {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in state.items()} == published


@torch.inference_mode()
def test_networks_reproduce_golden(golden, syncnet):
    audio = syncnet.forward_aud(torch.from_numpy(golden["syncnet_in_mfcc"]))
    np.testing.assert_allclose(audio.numpy(), golden["syncnet_out_aud"], rtol=0, atol=1e-4)
    lips = torch.from_numpy(golden["syncnet_in_lip"]).float()
    np.testing.assert_allclose(syncnet.forward_lip(lips).numpy(), golden["syncnet_out_lip"], rtol=0, atol=1e-4)
    # In channels-last memory, as the scorer runs it.
    frames_last = torch.from_numpy(np.ascontiguousarray(golden["syncnet_in_lip"].transpose(0, 2, 3, 4, 1)))
    out = syncnet.forward_lip(frames_last.float().permute(0, 4, 1, 2, 3))
    np.testing.assert_allclose(out.numpy(), golden["syncnet_out_lip"], rtol=0, atol=1e-4)


def test_mfcc_reproduces_golden_and_blocks_equal_the_whole(golden):
    samples = golden["mfcc_in_int16"]
    whole = lse.mfcc(samples)
    assert whole.shape == golden["mfcc_out"].shape == (13, 399)
    np.testing.assert_allclose(whole, golden["mfcc_out"], rtol=0, atol=1e-3)
    for block in (1, 37, 398):
        np.testing.assert_allclose(lse.mfcc(samples, block_columns=block), whole, rtol=0, atol=1e-9)
    for n in (399, 400, 401, 561, 1000):  # around one window and the zero-padded tail
        import python_speech_features
        expected = python_speech_features.mfcc(samples[:n], 16000).T
        np.testing.assert_allclose(lse.mfcc(samples[:n], block_columns=2), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("batch_size", [20, 7])
def test_scoring_reproduces_golden(golden, syncnet, batch_size):
    scorer = lse.SyncScorer(syncnet, batch_size=batch_size)
    score = scorer.score(iter(golden["lse_in_frames_bgr"]), golden["lse_in_audio_int16"])
    assert score.offset == int(golden["lse_out_offset"])
    assert abs(score.confidence - float(golden["lse_out_conf"])) < 1e-4
    assert abs(score.min_dist - float(golden["lse_out_min_dist"])) < 1e-4
    np.testing.assert_allclose(score.mdist, golden["lse_out_mdist"], rtol=0, atol=1e-4)
    assert score.frames == 50 and score.dists.shape == (45, 31)


@torch.inference_mode()
def test_window_embeddings_reproduce_golden(golden, syncnet):
    frames = np.stack([lse._resized(f) for f in golden["lse_in_frames_bgr"]])  # (50, 224, 224, 3)
    windows = np.stack([frames[i:i + 5] for i in range(45)])
    scorer = lse.SyncScorer(syncnet)
    np.testing.assert_allclose(scorer._lip_embeddings(windows).numpy(), golden["lse_out_video_feat"],
                               rtol=0, atol=1e-4)
    cepstra = torch.from_numpy(lse.mfcc(golden["lse_in_audio_int16"])).float()
    mfcc_windows = torch.stack([cepstra[:, 4 * i:4 * i + 20] for i in range(45)])[:, None]
    np.testing.assert_allclose(syncnet.forward_aud(mfcc_windows).numpy(), golden["lse_out_audio_feat"],
                               rtol=0, atol=1e-4)


def reference_distances(video, audio, vshift):
    """The reference's calc_pdist, one window at a time, on whole embedding arrays."""
    padded = torch.nn.functional.pad(audio, (0, 0, vshift, vshift))
    return torch.stack([torch.nn.functional.pairwise_distance(video[[i]].repeat(2 * vshift + 1, 1),
                                                              padded[i:i + 2 * vshift + 1])
                        for i in range(len(video))])


@pytest.mark.parametrize("windows,chunk,vshift", [(45, 20, 15), (7, 3, 15), (60, 1, 4), (33, 50, 15)])
def test_streamed_distances_equal_the_reference(windows, chunk, vshift):
    gen = torch.Generator().manual_seed(windows)
    video, audio = torch.randn(windows, 16, generator=gen), torch.randn(windows, 16, generator=gen)
    curve = lse.DistanceCurve(vshift)
    for start in range(0, windows, chunk):
        curve.add(video[start:start + chunk], audio[start:start + chunk])
    np.testing.assert_allclose(curve.finish().numpy(), reference_distances(video, audio, vshift).numpy(),
                               rtol=0, atol=1e-5)


def test_delaying_the_audio_by_k_frames_shifts_the_distances_by_k(golden, syncnet):
    """For any weights: the audio of window i after a k-frame delay is the audio of window i-k before."""
    frames = list(golden["lse_in_frames_bgr"])
    samples = golden["lse_in_audio_int16"]
    scorer = lse.SyncScorer(syncnet, batch_size=16)
    before = scorer.score(iter(frames), samples)
    for k in (2, 5):
        delayed = np.concatenate([np.zeros(k * lse.SAMPLES_PER_FRAME, np.int16), samples])
        after = scorer.score(iter(frames), delayed)
        # Every distance that pairs real audio in both runs moved by exactly k shifts.
        n, width = before.dists.shape
        for i in range(n):
            for s in range(width - k):
                audio_index = i + s - 15  # of the run before
                if 0 <= audio_index < n - k:
                    assert abs(after.dists[i, s + k] - before.dists[i, s]) < 1e-3, (k, i, s)
        # So does the mean curve over the windows free of edge effects, and with it its minimum.
        inner = slice(15 + k, n - 15)
        curve_before = before.dists[inner].mean(0)
        curve_after = after.dists[inner].mean(0)
        np.testing.assert_allclose(curve_after[k:], curve_before[:width - k], rtol=0, atol=1e-3)
        assert np.argmin(curve_after[k:]) == np.argmin(curve_before[:width - k])


def test_too_short_audio_is_a_clear_error(syncnet):
    scorer = lse.SyncScorer(syncnet)
    frames = [np.zeros((64, 64, 3), np.uint8)] * 20
    with pytest.raises(UserError, match=r"clip\.mp4: the audio lasts 0\.20 s \(5 frames\); at least 6"):
        scorer.score(iter(frames), np.zeros(5 * 640, np.int16), name="clip.mp4")
    with pytest.raises(UserError, match="fewer than 6 video frames"):
        scorer.score(iter(frames[:5]), np.zeros(50 * 640, np.int16), name="clip.mp4")


def test_published_file_loads_with_or_without_num_batches_tracked(tmp_path, syncnet, golden):
    state = {k: v for k, v in syncnet.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = str(tmp_path / "old.model")
    torch.save(state, path)
    loaded = load_syncnet(path)
    with torch.inference_mode():
        out = loaded.forward_aud(torch.from_numpy(golden["syncnet_in_mfcc"]))
    np.testing.assert_allclose(out.numpy(), golden["syncnet_out_aud"], rtol=0, atol=1e-4)


def test_wrong_network_and_missing_weights_are_one_line_errors(tmp_path, monkeypatch):
    from models import SyncNet_color
    wrong = str(tmp_path / "expert.pth")
    torch.save({"state_dict": SyncNet_color().state_dict()}, wrong)
    with pytest.raises(UserError) as error:
        load_syncnet(wrong)
    assert "does not fit SyncNet" in str(error.value) and "SyncNet_color" in str(error.value)

    def offline(url, path):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(fileio, "download", offline)
    missing = tmp_path / "checkpoints" / "syncnet_v2.model"
    with pytest.raises(UserError) as error:
        load_syncnet(missing)
    message = str(error.value)
    assert str(missing) in message and "syncnet_v2.model" in message and "\n" not in message
    assert "https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model" in message
    assert not missing.exists() and not list(tmp_path.glob("checkpoints/*"))


def test_missing_weights_are_downloaded_through_a_temporary_file(tmp_path, monkeypatch, weights):
    def fake_download(url, path):
        assert url.endswith("syncnet_v2.model") and os.path.dirname(path) == str(tmp_path)
        with open(weights, "rb") as src, open(path, "wb") as dst:
            dst.write(src.read())

    monkeypatch.setattr(fileio, "download", fake_download)
    assert isinstance(load_syncnet(tmp_path / "syncnet_v2.model"), SyncNet)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("lse videos")
    for seed in range(2):
        write_talking_video(str(root / f"clip {seed}.mp4"), seconds=1.2, width=96, height=80, seed=seed)
    return root


def run_scores(*args):
    return subprocess.run([sys.executable, SCORES_LRS, "--quiet", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)


def test_folder_scores_csv_and_reference_lines(videos, weights, syncnet, tmp_path):
    table = tmp_path / "scores.csv"
    result = run_scores("--data_root", videos, "--initial_model", weights, "--csv", table)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(table)))
    assert [r["name"] for r in rows] == ["clip 0.mp4", "clip 1.mp4"]
    # Each row is the score of the file's JPEG frames and audio, computed here directly.
    scorer = lse.SyncScorer(syncnet)
    for row in rows:
        path = str(videos / row["name"])
        frames = list(videoio.jpeg_frames(path, fps=25))
        samples = lse.read_audio_int16(path, str(tmp_path))
        expected = scorer.score(iter(frames), samples)
        assert int(row["offset"]) == expected.offset and int(row["frames"]) == expected.frames == 30
        assert abs(float(row["LSE-C"]) - expected.confidence) < 1e-4
        assert abs(float(row["LSE-D"]) - expected.min_dist) < 1e-4
    lines = result.stdout.strip().splitlines()
    mean_c = np.mean([float(r["LSE-C"]) for r in rows])
    mean_d = np.mean([float(r["LSE-D"]) for r in rows])
    assert lines[-2].startswith("Average Confidence: ") and abs(float(lines[-2].split(": ")[1]) - mean_c) < 1e-5
    assert lines[-1].startswith("Average Minimum Distance: ")
    assert abs(float(lines[-1].split(": ")[1]) - mean_d) < 1e-5


def test_bad_videos_are_listed_and_the_others_scored(videos, weights, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    os.link(videos / "clip 0.mp4", folder / "good.mp4")
    (folder / "corrupt.mp4").write_bytes(b"not a video")
    with videoio.VideoWriter(str(folder / "silent film.mp4"), 25, 64, 64) as out:  # no audio track
        for _ in range(10):
            out.write(np.zeros((64, 64, 3), np.uint8))
    short = tmp_path / "short.wav"
    save_wav(speech_like_audio(0.15, 16000), str(short), 16000)
    with videoio.VideoWriter(str(folder / "short.mp4"), 25, 64, 64, audio_path=str(short)) as out:
        for _ in range(10):
            out.write(np.zeros((64, 64, 3), np.uint8))
    table = tmp_path / "scores.csv"
    result = run_scores("--data_root", folder, "--initial_model", weights, "--csv", table)
    assert result.returncode == 1
    assert "Average Confidence: " in result.stdout
    assert [r["name"] for r in csv.DictReader(open(table))] == ["good.mp4"]
    err = result.stderr
    assert "3 of 4 could not be scored" in err
    assert f"{folder / 'silent film.mp4'}: the file has no audio track" in err
    assert f"{folder / 'corrupt.mp4'}: cannot read the file" in err
    assert "short.mp4: the audio lasts" in err and "Traceback" not in err


def test_cli_errors_are_one_line(tmp_path, weights):
    result = run_scores("--data_root", tmp_path / "absent", "--initial_model", weights)
    assert result.returncode == 1 and result.stderr.strip() == f"error: {tmp_path / 'absent'}: folder not found (--data_root)"
    result = run_scores("--data_root", tmp_path, "--initial_model", weights)
    assert result.returncode == 1 and result.stderr.strip() == f"error: {tmp_path}: no .mp4 videos to score"
