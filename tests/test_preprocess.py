"""preprocess.py on a small generated LRS2-style tree, and the filelists tool."""
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from scipy.io import wavfile

import generate_filelists
import preprocess
from cli import UserError
from conftest import ROOT
from face_detection import S3FD, BatchedDetection, FaceAlignment
from synthetic import recipe_state_dict, write_talking_video
from videoio import VideoReader

FPS = 25
BATCH = 8
# (group, clip, seconds, seed): 20, 20 and 12 frames of 128x96.
CLIPS = [("5535415699068794046", "00001", 0.8, 1), ("5535415699068794046", "00002", 0.8, 2),
         ("6330311066473698535", "00011", 0.48, 3)]
CORRUPT = "6330311066473698535/00012.mp4"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A data root of three clips and a corrupt video, and the result of preprocessing it once."""
    base = tmp_path_factory.mktemp("lrs2")
    weights = str(base / "s3fd_recipe.pth")
    torch.save(recipe_state_dict(S3FD()), weights)
    data_root, out_root = base / "main", base / "preprocessed"
    for group, clip, seconds, seed in CLIPS:
        (data_root / group).mkdir(parents=True, exist_ok=True)
        write_talking_video(data_root / group / f"{clip}.mp4", seconds, width=128, height=96, fps=FPS, seed=seed)
    (data_root / CORRUPT).write_bytes(np.random.RandomState(0).bytes(4000))
    argv = ["--data_root", str(data_root), "--preprocessed_root", str(out_root), "--ngpu", "0",
            "--batch_size", str(BATCH), "--detector", weights]
    with pytest.raises(UserError) as error:
        preprocess.main(argv)
    return {"data_root": data_root, "out": out_root, "weights": weights, "argv": argv, "error": str(error.value)}


def expected_crops(video_path, weights):
    """{frame index: crop} from the detector run on the decoded frames in the same batches."""
    batched = BatchedDetection(FaceAlignment(device="cpu", path_to_detector=weights), BATCH)
    with VideoReader(video_path) as video:
        frames = list(video)
    crops = {}
    for i, (frame, box) in enumerate(zip(frames, batched.detect(frames))):
        if box is not None and frame[box[1]:box[3], box[0]:box[2]].size:
            crops[i] = frame[box[1]:box[3], box[0]:box[2]]
    return crops, len(frames)


def argv_for(tree, data_root=None, out=None):
    """The fixture's command line with another data root and / or output folder."""
    swap = {str(tree["data_root"]): str(data_root or tree["data_root"]), str(tree["out"]): str(out or tree["out"])}
    return [swap.get(a, a) for a in tree["argv"]]


def copy_without_corrupt(tree, tmp_path):
    data_root = tmp_path / "main"
    shutil.copytree(tree["data_root"], data_root)
    (data_root / CORRUPT).unlink()
    return data_root


def listing(folder):
    return sorted((os.path.relpath(os.path.join(d, f), folder), os.stat(os.path.join(d, f)).st_mtime_ns)
                  for d, _, files in os.walk(folder) for f in files)


def test_layout_frame_indices_and_crops(tree):
    groups = sorted(os.listdir(tree["out"]))
    assert groups == sorted({g for g, *_ in CLIPS}) + ["preprocess_log.txt"]
    for group, clip, seconds, _ in CLIPS:
        folder = tree["out"] / group / clip
        crops, n_frames = expected_crops(tree["data_root"] / group / f"{clip}.mp4", tree["weights"])
        assert n_frames == round(seconds * FPS)
        assert len(crops) > 0
        names = sorted(os.listdir(folder))
        assert names == sorted([f"{i}.jpg" for i in crops] + ["audio.wav"])
        for i, crop in crops.items():
            jpg = cv2.imread(str(folder / f"{i}.jpg"))
            assert jpg.shape == crop.shape
            assert np.abs(jpg.astype(int) - crop).mean() < 4  # JPEG of the same pixels


def test_audio_is_16k_mono_of_the_clip_length(tree):
    for group, clip, seconds, _ in CLIPS:
        rate, wav = wavfile.read(tree["out"] / group / clip / "audio.wav")
        assert rate == 16000 and wav.ndim == 1 and wav.dtype == np.int16
        assert abs(len(wav) / rate - seconds) < 0.1
        assert np.abs(wav).max() > 1000  # the speech-like signal, not silence


def test_corrupt_video_is_reported_and_skipped(tree):
    assert "1 of 4 videos failed" in tree["error"]
    clip_dir = tree["out"] / CORRUPT.replace(".mp4", "")
    assert not clip_dir.exists()
    assert [n for n in os.listdir(clip_dir.parent) if n.startswith(".")] == []  # no temporary folder left
    log = (tree["out"] / "preprocess_log.txt").read_text()
    assert f"FAILED {tree['data_root'] / CORRUPT}: cannot open as a video" in log
    assert "processed 3 videos" in log


def test_second_run_does_no_work(tree, tmp_path, monkeypatch):
    out = tmp_path / "preprocessed"
    shutil.copytree(tree["out"], out, copy_function=shutil.copy2)
    before = listing(out)
    argv = argv_for(tree, out=out)
    # As a command: the corrupt video is retried, fails again, exit status 1 and one error line.
    result = subprocess.run([sys.executable, os.path.join(ROOT, "preprocess.py"), *argv],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 of 1 videos failed")
    assert "3 were already done" in result.stdout
    assert [entry for entry in listing(out) if "preprocess_log" not in entry[0]] == \
        [entry for entry in before if "preprocess_log" not in entry[0]]

    # Without the corrupt video there is nothing to do: no detector is even built.
    argv = argv_for(tree, copy_without_corrupt(tree, tmp_path), out)
    before = listing(out)
    monkeypatch.setattr("face_detection.FaceAlignment", None)  # building a detector would fail
    summary = preprocess.main(argv)
    assert summary["processed"] == 0 and summary["already_done"] == 3
    assert listing(out) == before


def test_interrupted_clip_is_redone(tree, tmp_path):
    out = tmp_path / "preprocessed"
    shutil.copytree(tree["out"], out)
    group, clip = CLIPS[2][:2]
    expected = {name: (out / group / clip / name).read_bytes() for name in os.listdir(out / group / clip)}
    shutil.rmtree(out / group / clip)
    stale = out / group / f".{clip}.tmp"
    stale.mkdir()
    (stale / "999.jpg").write_bytes(b"half-written")
    summary = preprocess.main(argv_for(tree, copy_without_corrupt(tree, tmp_path), out))
    assert summary["processed"] == 1 and summary["already_done"] == 2
    assert not stale.exists()
    redone = {name: (out / group / clip / name).read_bytes() for name in os.listdir(out / group / clip)}
    assert redone.keys() == expected.keys()
    assert all(redone[n] == expected[n] for n in redone if n.endswith(".jpg"))


def test_user_mistakes(tmp_path):
    with pytest.raises(UserError, match="data root not found"):
        preprocess.main(["--data_root", str(tmp_path / "nope"), "--preprocessed_root", str(tmp_path / "out")])
    with pytest.raises(UserError, match="no videos found"):
        preprocess.main(["--data_root", str(tmp_path), "--preprocessed_root", str(tmp_path / "out")])
    with pytest.raises(UserError, match="--ngpu"):
        preprocess.pick_devices(-1)
    assert [d.type for d in preprocess.pick_devices(0)] == ["cpu"]
    if not torch.cuda.is_available():
        assert len(preprocess.pick_devices(2)) == 1  # no GPU: one worker on the CPU (or MPS)


def test_filelists_from_the_preprocessed_tree(tree, tmp_path):
    lists = generate_filelists.main(["--data_root", str(tree["out"]), "--output_dir", str(tmp_path),
                                     "--split_by", "clip", "--val_fraction", "0.3"])
    long_clips = {f"{g}/{c}" for g, c, seconds, _ in CLIPS if seconds * FPS > 15}
    assert set(lists["train"]) | set(lists["val"]) == long_clips  # the 12-frame clip is left out
    assert len(lists["val"]) == 1 and not (tmp_path / "test.txt").exists()
    assert (tmp_path / "val.txt").read_text() == f"{lists['val'][0]}\n"


def fake_tree(root, groups=40, clips=3, short=(), no_audio=()):
    """Preprocessed-like folders of empty files: 16 jpgs per clip (the fewest usable), 15 if listed as short."""
    for g in range(groups):
        for c in range(clips):
            name = f"{g:04d}/{c:05d}"
            folder = root / name
            folder.mkdir(parents=True)
            for i in range(15 if name in short else 16):
                (folder / f"{i}.jpg").touch()
            if name not in no_audio:
                (folder / "audio.wav").touch()
    (root / "0000" / ".00009.tmp").mkdir()  # an unfinished clip is not listed


def read(path):
    return path.read_text().split()


def test_filelists_split_is_reproducible_and_by_group(tmp_path):
    root = tmp_path / "pre"
    fake_tree(root, short={"0001/00000"}, no_audio={"0002/00001"})
    out_a, out_b, out_c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    args = ["--preprocessed_root", str(root), "--val_fraction", "0.1", "--test_fraction", "0.1"]
    generate_filelists.main(args + ["--output_dir", str(out_a)])
    generate_filelists.main(args + ["--output_dir", str(out_b)])
    generate_filelists.main(args + ["--output_dir", str(out_c), "--seed", "1"])
    splits = {s: read(out_a / f"{s}.txt") for s in ("train", "val", "test")}
    assert all(read(out_b / f"{s}.txt") == names for s, names in splits.items())
    assert read(out_c / "val.txt") != splits["val"]
    everything = splits["train"] + splits["val"] + splits["test"]
    assert len(everything) == len(set(everything)) == 40 * 3 - 2
    assert "0001/00000" not in everything and "0002/00001" not in everything
    groups = {s: {n.split("/")[0] for n in names} for s, names in splits.items()}
    assert len(groups["val"]) == len(groups["test"]) == 4
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"])


def test_filelists_from_lrs2_lists(tmp_path, capsys):
    root = tmp_path / "pre"
    fake_tree(root, groups=3, clips=2, short={"0001/00000"})
    lrs2 = tmp_path / "lrs2"
    lrs2.mkdir()
    (lrs2 / "train.txt").write_text("0002/00001\n0000/00000\n0001/00000\n9999/00001\n")
    (lrs2 / "val.txt").write_text("0000/00001\n")
    (lrs2 / "test.txt").write_text("0002/00000 NF\n0001/00001 MV\n")
    lists = generate_filelists.main(["--preprocessed_root", str(root), "--output_dir", str(tmp_path / "out"),
                                     "--lrs2_lists", str(lrs2)])
    assert lists == {"train": ["0002/00001", "0000/00000"], "val": ["0000/00001"],
                     "test": ["0002/00000", "0001/00001"]}
    assert read(tmp_path / "out" / "test.txt") == ["0002/00000", "0001/00001"]
    assert "2 entries of the LRS2 lists" in capsys.readouterr().out


def test_filelists_user_mistakes(tmp_path):
    root = tmp_path / "pre"
    fake_tree(root, groups=1, clips=3)
    with pytest.raises(UserError, match="try --split_by clip"):
        generate_filelists.main(["--preprocessed_root", str(root), "--output_dir", str(tmp_path)])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no usable clips"):
        generate_filelists.main(["--preprocessed_root", str(empty), "--output_dir", str(tmp_path)])
    with pytest.raises(UserError, match="val_fraction"):
        generate_filelists.main(["--preprocessed_root", str(root), "--val_fraction", "1.5"])


class EveryOtherFrame:
    """Stands in for BatchedDetection: a face on even frames, none on odd ones; fails at frame `fail_at`."""

    def __init__(self, fail_at=None):
        self.fail_at = fail_at

    def stream(self, frames):
        for i, frame in enumerate(frames):
            if i == self.fail_at:
                raise OSError("disk full")
            yield frame, ((10, 20, 50, 60) if i % 2 == 0 else None)


def test_frames_without_a_face_have_no_file_and_failures_leave_nothing(tree, tmp_path):
    group, clip = CLIPS[2][:2]
    video = str(tree["data_root"] / group / f"{clip}.mp4")
    clip_dir = tmp_path / group / clip
    clip_dir.parent.mkdir()
    assert preprocess.process_video(video, str(clip_dir), EveryOtherFrame(), 16000) == (12, 6)
    assert sorted(os.listdir(clip_dir)) == sorted([f"{i}.jpg" for i in range(0, 12, 2)] + ["audio.wav"])
    assert cv2.imread(str(clip_dir / "4.jpg")).shape == (40, 40, 3)

    broken = tmp_path / group / "broken"
    with pytest.raises(OSError, match="disk full"):
        preprocess.process_video(video, str(broken), EveryOtherFrame(fail_at=5), 16000)
    assert sorted(os.listdir(clip_dir.parent)) == [clip]  # neither the clip nor its temporary folder


def test_one_worker_per_device_gives_the_same_files(tree, tmp_path, monkeypatch):
    """--ngpu N runs N workers, one detector each; here two CPU workers stand in for two GPUs."""
    out = tmp_path / "preprocessed"
    monkeypatch.setattr(preprocess, "pick_devices", lambda ngpu: [torch.device("cpu")] * 2)
    summary = preprocess.main(argv_for(tree, copy_without_corrupt(tree, tmp_path), out))
    assert summary["processed"] == 3
    for group, clip, *_ in CLIPS:
        names = sorted(os.listdir(tree["out"] / group / clip))
        assert sorted(os.listdir(out / group / clip)) == names
        assert all((out / group / clip / n).read_bytes() == (tree["out"] / group / clip / n).read_bytes()
                   for n in names if n.endswith(".jpg"))
