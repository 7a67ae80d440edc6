"""sync_audit.py: known audio shifts recovered, the alignment property for any weights, the report,
filtered filelists the trainers read, unreadable clips reported."""
import csv
import os
import shutil

import numpy as np
import pytest
import torch
from scipy.io import wavfile
from torch import nn
from torch.nn import functional as F

import make_synthetic_dataset
import sync_audit
from dataset import MelCache, load_split
from hparams import hparams
from models import SyncNet_color
from synthetic import recipe_state_dict


class MouthOracle(nn.Module):
    """An "expert" whose answer is known on synthetic clips: the mouth's darkness per frame
    against the audio's loudness per frame, each 5-vector centred and normalised.

    Synthetic mouths open with the loudness of their frame, so the embeddings agree
    best when the audio window is the frame's own.
    """

    img_size = 96

    def embed_faces(self, faces):  # (B, 15, 48, 96): frame t is channels 3t..3t+2 (BGR)
        green = faces[:, 1::3].mean(dim=(2, 3))  # (B, 5): the mouth is the least green part
        return F.normalize(-(green - green.mean(1, keepdim=True)), dim=1)

    def embed_audio(self, mels):  # (B, 1, 80, 16): frame t is about mel columns 3.2 t .. 3.2 (t+1)
        # Plus one column: a window starts at int(3.2 f), on average half a column before frame f.
        edges = [min(16, int(3.2 * t) + 1) for t in range(6)]
        loud = torch.stack([mels[:, 0, :, a:b].mean(dim=(1, 2)) for a, b in zip(edges, edges[1:])], 1)
        return F.normalize(loud - loud.mean(1, keepdim=True), dim=1)


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    root = tmp_path_factory.mktemp("shifted")
    make_synthetic_dataset.write_dataset(str(root), clips=8, seconds=3.0, held_out=1, seed=3, progress=False,
                                         max_audio_shift=4)
    with open(root / "audio_shifts.csv") as f:
        expected = {row["clip"]: int(row["expected_offset"]) for row in csv.DictReader(f)}
    return root, expected


def test_synthetic_shifts_are_recorded_and_applied(shifted):
    root, expected = shifted
    assert len(expected) == 8 and len(set(expected.values())) > 2 and max(map(abs, expected.values())) <= 4
    wav = np.arange(1, 3201, dtype=np.float32)
    later = make_synthetic_dataset.shift_audio(wav, 2, 640)
    assert np.all(later[:1280] == 0) and np.array_equal(later[1280:], wav[:-1280])
    earlier = make_synthetic_dataset.shift_audio(wav, -1, 640)
    assert np.array_equal(earlier[:-640], wav[640:]) and np.all(earlier[-640:] == 0)


def test_known_shifts_are_recovered(shifted):
    root, expected = shifted
    oracle = MouthOracle()
    found = {}
    for name, folder in sync_audit.clips_of(str(root), None):
        frames, offset, confidence = sync_audit.audit_clip(oracle, folder, hparams, "cpu", vshift=8)
        assert frames == 75 and confidence > 0
        found[name] = offset
    assert found == expected


def test_shifting_the_audio_by_k_frames_moves_the_curve_by_k_for_any_weights(shifted, tmp_path):
    """With the recipe weights (no sync knowledge): the audio embedding of frame f after a k-frame
    delay is that of frame f-k before, so every distance pair moves by k shifts. (k = 5 frames is
    16 mel hops exactly; other k land between mel frames.)"""
    root, _ = shifted
    model = SyncNet_color()
    model.load_state_dict(recipe_state_dict(model))
    model.eval()
    source = root / "synth" / "clip00000"
    curves = {}
    for k in (0, 5):
        clip = tmp_path / f"delay{k}"
        shutil.copytree(source, clip)
        rate, samples = wavfile.read(str(source / "audio.wav"))  # int16, written as is (no rescaling)
        wavfile.write(str(clip / "audio.wav"), rate, make_synthetic_dataset.shift_audio(samples, k, 640))
        for cached in clip.glob("mel_*.npy"):
            cached.unlink()
        faces = sync_audit.read_faces(str(clip), set(range(75)), hparams.img_size)
        mel = MelCache(hparams).get(str(clip))
        starts, x, audio_frames, y = sync_audit.expert_inputs(faces, mel, hparams)
        with torch.inference_mode():
            v, a = model.embed_faces(torch.from_numpy(x)).numpy(), model.embed_audio(torch.from_numpy(y)).numpy()
        curves[k] = (starts, v, audio_frames, a)
    starts, v0, frames0, a0 = curves[0]
    _, v5, frames5, a5 = curves[5]
    np.testing.assert_allclose(v0, v5, rtol=0, atol=1e-6)  # same faces
    # Audio frame f + 5 after the delay equals frame f before, away from the zero-filled start
    # (whose STFT windows reach back across the shift) and the truncated end.
    checked = 0
    for f in range(1, len(frames0) - 6):
        if f + 5 in frames5:
            np.testing.assert_allclose(a5[frames5.index(f + 5)], a0[frames0.index(f)], rtol=0, atol=1e-4)
            checked += 1
    assert checked > 50
    # Hence the curve of every window pair moves by 5 shifts, and its minimum with it.
    c0 = sync_audit.distance_curve(starts, v0, frames0[1:-6], a0[1:-6], 8)
    c5 = sync_audit.distance_curve(starts, v5, [f + 5 for f in frames0[1:-6]],
                                   np.stack([a5[frames5.index(f + 5)] for f in frames0[1:-6]]), 8)
    np.testing.assert_allclose(c5[5:], c0[:-5], rtol=0, atol=1e-4)
    assert np.nanargmin(c5[5:]) == np.nanargmin(c0[:-5])


def test_cli_report_summary_and_filtered_filelists(shifted, tmp_path, monkeypatch, capsys):
    root, expected = shifted
    monkeypatch.setattr("models.SyncNet_color", MouthOracle)
    monkeypatch.setattr("checkpoints.load_sized_model", lambda network, path, device, img_size=None: (network(), {}))
    broken = root / "synth" / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "audio.wav").write_bytes(b"not audio")
    for i in range(20):
        shutil.copy(root / "synth" / "clip00000" / f"{i}.jpg", broken / f"{i}.jpg")
    filelists = root / "filelists"
    with open(filelists / "train.txt", "a") as f:
        f.write("synth/broken\n")
    out = tmp_path / "report.csv"
    try:
        sync_audit.main(["--data_root", str(root), "--checkpoint_path", "expert.pth", "--vshift", "8",
                         "--filelist", str(filelists / "train.txt"), str(filelists / "val.txt"),
                         "--out", str(out), "--write_filelists", str(tmp_path / "audited"),
                         "--max_abs_offset", "3", "--quiet"])
    finally:
        shutil.rmtree(broken)
    rows = {r["clip"]: r for r in csv.DictReader(open(out))}
    assert set(rows) == {n for n in expected if n != "synth/clip00001"} | {"synth/broken"}  # test clip not listed
    assert rows["synth/broken"]["error"].startswith("audio.wav cannot be read") and not rows["synth/broken"]["offset"]
    for name, row in rows.items():
        if name != "synth/broken":
            assert int(row["offset"]) == expected[name] and int(row["frames"]) == 75
    printed = capsys.readouterr()
    off = sum(abs(expected[n]) > 3 for n in rows if n != "synth/broken")
    assert f"audited {len(rows) - 1} clips, 1 could not be read" in printed.out
    assert f"off by more than 3 frame(s): {off} " in printed.out
    assert "skipped synth/broken: audio.wav cannot be read" in printed.err
    assert not os.path.exists(str(out) + ".partial")
    # The filtered lists are read by the trainers as they are.
    kept = load_split(str(root), "train", str(tmp_path / "audited"))
    assert sorted(kept) == sorted(os.path.join(str(root), n) for n in rows
                                  if n != "synth/broken" and abs(expected[n]) <= 3 and n in
                                  open(filelists / "train.txt").read())
    assert os.path.isfile(tmp_path / "audited" / "val.txt")


def test_resume_keeps_written_rows(shifted, tmp_path, monkeypatch):
    root, expected = shifted
    monkeypatch.setattr("models.SyncNet_color", MouthOracle)
    monkeypatch.setattr("checkpoints.load_sized_model", lambda network, path, device, img_size=None: (network(), {}))
    out = tmp_path / "report.csv"
    first = sorted(expected)[0]
    with open(str(out) + ".partial", "w") as f:
        f.write(f"clip,frames,offset,confidence,error\n{first},75,99,1.0,\n")  # a row from "before"
    sync_audit.main(["--data_root", str(root), "--checkpoint_path", "unused.pth", "--out", str(out),
                     "--vshift", "8", "--resume", "--quiet"])
    rows = {r["clip"]: r for r in csv.DictReader(open(out))}
    assert set(rows) == set(expected) and rows[first]["offset"] == "99"


def test_bad_arguments_are_one_line_errors(tmp_path):
    from cli import UserError
    with pytest.raises(UserError, match="folder not found"):
        sync_audit.main(["--data_root", str(tmp_path / "nope"), "--checkpoint_path", "x.pth"])
    with pytest.raises(UserError, match="--write_filelists needs --filelist"):
        sync_audit.main(["--data_root", str(tmp_path), "--checkpoint_path", "x.pth", "--write_filelists", "d"])


def test_a_288_expert_audits_288_faces(tmp_path, capsys):
    """The expert's size comes from its checkpoint: a 288 expert reads the crops at 288 (lower
    halves (15, 144, 288)) with no --hparams; an --hparams img_size that disagrees is one line."""
    from checkpoints import CheckpointError, save_checkpoint
    root = tmp_path / "hd"
    make_synthetic_dataset.write_dataset(str(root), clips=1, seconds=0.7, held_out=0, size=288, seed=5,
                                         progress=False)
    torch.manual_seed(0)
    expert = tmp_path / "expert_288.pth"
    save_checkpoint(expert, SyncNet_color(288))  # random weights, img_size 288 recorded
    out = tmp_path / "report.csv"
    sync_audit.main(["--data_root", str(root), "--checkpoint_path", str(expert), "--vshift", "2",
                     "--out", str(out), "--quiet"])
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 1 and rows[0]["clip"] == "synth/clip00000" and not rows[0]["error"]
    assert int(rows[0]["frames"]) == 17 and abs(int(rows[0]["offset"])) <= 2
    assert "audited 1 clips" in capsys.readouterr().out
    with pytest.raises(CheckpointError, match=r"a 288x288 SyncNet_color checkpoint \(img_size 288\), but a 96x96"):
        sync_audit.main(["--data_root", str(root), "--checkpoint_path", str(expert), "--out", str(out),
                         "--hparams", "img_size=96", "--quiet"])
