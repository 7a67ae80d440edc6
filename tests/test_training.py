"""The three trainers on a tiny synthetic dataset, on CPU: checkpoints, resume, logs, sync weight, errors."""
import csv
import os
import subprocess
import sys
from types import SimpleNamespace

import cv2
import pytest
import torch

import color_syncnet_train
import hq_wav2lip_train
import wav2lip_train
import wloss_hq_wav2lip_train
from checkpoints import load_checkpoint, load_model
from cli import UserError
from hparams import hparams
from make_synthetic_dataset import write_dataset
from models import SyncNet_color, Wav2Lip, Wav2Lip_disc_qual
from trainers import GANTrainer, GeneratorTrainer, WassersteinTrainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUBLISHED_KEYS = {"state_dict", "optimizer", "global_step", "global_epoch"}
EXPERT_HP = "syncnet_batch_size=2,syncnet_checkpoint_interval=2,syncnet_eval_interval=2,syncnet_eval_steps=1"
GEN_HP = "batch_size=1,checkpoint_interval=2,eval_interval=2,eval_steps=1,hq_eval_steps=1"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic"))
    write_dataset(root, clips=5, seconds=1.0, held_out=1, size=48, progress=False)
    return root


def common_args(data, checkpoint_dir, *extra):
    return ["--data_root", data, "--filelists_dir", os.path.join(data, "filelists"),
            "--checkpoint_dir", str(checkpoint_dir), "--num_workers", "0", "--device", "cpu", *extra]


def read_log(folder):
    with open(os.path.join(folder, "log.csv"), newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def expert_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("expert")
    color_syncnet_train.main(common_args(data, out, "--max_steps", "2", "--hparams", EXPERT_HP))
    return out


def test_expert_checkpoints_logs_and_resume(data, expert_run, tmp_path):
    names = sorted(f for f in os.listdir(expert_run) if f.endswith(".pth"))
    assert names == ["checkpoint_step000000001.pth", "checkpoint_step000000002.pth"]
    raw = torch.load(expert_run / names[1], weights_only=True)
    assert PUBLISHED_KEYS <= set(raw) and raw["global_step"] == 2 and raw["optimizer"] is not None
    assert not any(k.startswith("module.") for k in raw["state_dict"])
    load_model(SyncNet_color(), expert_run / names[1])  # strict
    rows = read_log(expert_run)
    assert {(r["phase"], r["name"]) for r in rows} >= {("train", "loss"), ("train", "accuracy"),
                                                      ("eval", "loss"), ("data", "skipped_window")}
    assert os.path.getsize(expert_run / "loss_curves.png") > 1000

    # resume into a copy of the folder: the step count continues, the log keeps its history once
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    (resumed / "log.csv").write_bytes((expert_run / "log.csv").read_bytes())
    color_syncnet_train.main(common_args(data, resumed, "--max_steps", "3", "--hparams", EXPERT_HP,
                                         "--checkpoint_path", str(expert_run / names[1])))
    assert sorted(f for f in os.listdir(resumed) if f.endswith(".pth")) == ["checkpoint_step000000003.pth"]
    checkpoint = load_checkpoint(resumed / "checkpoint_step000000003.pth")
    assert checkpoint["global_step"] == 3
    train_steps = [int(r["step"]) for r in read_log(resumed) if r["phase"] == "train" and r["name"] == "loss"]
    assert train_steps == [1, 2, 3]


def test_expert_amp_and_latest_resume(data, expert_run, tmp_path):
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / "checkpoint_step000000002.pth").write_bytes((expert_run / "checkpoint_step000000002.pth").read_bytes())
    color_syncnet_train.main(common_args(data, folder, "--max_steps", "3", "--resume", "--amp",
                                         "--hparams", EXPERT_HP))
    assert load_checkpoint(folder / "checkpoint_step000000003.pth")["global_step"] == 3


def generator_run(script, data, expert_run, out, *extra):
    expert = str(expert_run / "checkpoint_step000000002.pth")
    script.main(common_args(data, out, "--syncnet_checkpoint_path", expert, *extra))


def test_generator_sync_weight_switch_samples(data, expert_run, tmp_path):
    generator_run(wav2lip_train, data, expert_run, tmp_path, "--max_steps", "1",
                  "--hparams", f"{GEN_HP},syncnet_switch_threshold=100")
    # wav2lip_train evaluates at step 1; any sync loss is < 100, so the weight switches to 0.01
    step1 = load_checkpoint(tmp_path / "checkpoint_step000000001.pth")
    assert step1["syncnet_wt"] == 0.01 and step1["global_step"] == 1
    assert PUBLISHED_KEYS <= set(step1)
    load_model(Wav2Lip(), tmp_path / "checkpoint_step000000001.pth")
    assert [r["step"] for r in read_log(tmp_path) if r["phase"] == "eval" and r["name"] == "sync"] == ["1"]
    sample = cv2.imread(str(tmp_path / "samples_step000000001" / "0_4.jpg"))
    assert sample.shape == (96, 4 * 96, 3)  # reference | masked input | generated | ground truth
    assert os.path.getsize(tmp_path / "loss_curves.png") > 1000


@pytest.mark.parametrize("trainer, sync, expected", [
    (GeneratorTrainer, 0.76, 0.0), (GeneratorTrainer, 0.74, 0.01), (GANTrainer, 0.74, 0.03)])
def test_sync_weight_rule(trainer, sync, expected):
    fake = SimpleNamespace(hp=hparams, state={"syncnet_wt": 0.0}, after_switch_field=trainer.after_switch_field)
    trainer.after_eval(fake, {"sync": sync, "l1": 0.1})
    assert fake.state["syncnet_wt"] == expected


def test_gan_checkpoints_resume_keeps_sync_weight(data, expert_run, tmp_path):
    first = tmp_path / "first"
    generator_run(hq_wav2lip_train, data, expert_run, first, "--max_steps", "1",
                  "--hparams", f"{GEN_HP},eval_interval=1,syncnet_switch_threshold=100")
    assert {"checkpoint_step000000001.pth", "disc_checkpoint_step000000001.pth", "log.csv",
            "loss_curves.png", "samples_step000000001"} <= set(os.listdir(first))
    assert load_checkpoint(first / "checkpoint_step000000001.pth")["syncnet_wt"] == 0.03
    disc = torch.load(first / "disc_checkpoint_step000000001.pth", weights_only=True)
    assert PUBLISHED_KEYS <= set(disc) and disc["global_step"] == 1
    load_model(Wav2Lip_disc_qual(), first / "disc_checkpoint_step000000001.pth")
    names = {r["name"] for r in read_log(first) if r["phase"] == "eval"}
    assert names == {"l1", "sync", "perceptual", "disc_real", "disc_fake"}

    second = tmp_path / "second"
    generator_run(hq_wav2lip_train, data, expert_run, second, "--max_steps", "2",
                  "--checkpoint_path", str(first / "checkpoint_step000000001.pth"),
                  "--disc_checkpoint_path", str(first / "disc_checkpoint_step000000001.pth"),
                  "--hparams", f"{GEN_HP},syncnet_switch_threshold=0")
    step2 = load_checkpoint(second / "checkpoint_step000000002.pth")
    assert step2["global_step"] == 2 and step2["syncnet_wt"] == 0.03  # restored, not reset to 0
    assert load_checkpoint(second / "disc_checkpoint_step000000002.pth")["global_step"] == 2


def test_wloss_critic_steps_on_fresh_batches(data, expert_run, tmp_path, monkeypatch):
    seen = []
    critic_step = WassersteinTrainer.critic_step

    def counting(self, real, fake):
        seen.append(real.clone())
        assert self.optimizer.param_groups[0]["betas"] == (0.0, 0.9)
        return critic_step(self, real, fake)

    monkeypatch.setattr(WassersteinTrainer, "critic_step", counting)
    generator_run(wloss_hq_wav2lip_train, data, expert_run, tmp_path, "--max_steps", "1", "--critic_steps", "2",
                  "--hparams", f"{GEN_HP},eval_interval=1,wgan_beta1=0,wgan_beta2=0.9")
    assert len(seen) == 2 and not torch.equal(seen[0], seen[1])  # two critic updates, each on its own batch
    assert load_checkpoint(tmp_path / "checkpoint_step000000001.pth")["img_size"] == 96
    load_model(Wav2Lip_disc_qual(), tmp_path / "disc_checkpoint_step000000001.pth")  # the discriminator's layout
    train = {r["name"] for r in read_log(tmp_path) if r["phase"] == "train"}
    assert train == {"l1", "sync", "perceptual", "critic_real", "critic_fake", "gradient_penalty"}
    assert {r["name"] for r in read_log(tmp_path) if r["phase"] == "eval"} == {
        "l1", "sync", "perceptual", "critic_real", "critic_fake", "wasserstein"}
    with pytest.raises(UserError, match="--critic_steps must be at least 1, got 0"):
        generator_run(wloss_hq_wav2lip_train, data, expert_run, tmp_path / "bad", "--critic_steps", "0")


@pytest.mark.parametrize("damage", ["few_frames", "bad_jpgs"])
def test_unusable_dataset_is_one_line_error(tmp_path, damage):
    root = tmp_path / "data"
    seconds = 0.5 if damage == "few_frames" else 1.0  # 12 or 25 frames
    write_dataset(str(root), clips=3, seconds=seconds, held_out=1, size=32, progress=False)
    if damage == "bad_jpgs":
        for jpg in root.glob("synth/*/*.jpg"):
            jpg.write_bytes(b"not a jpeg")
    out = tmp_path / "ck"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "color_syncnet_train.py"),
                             *common_args(str(root), out), "--num_workers", "1"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    if damage == "few_frames":
        assert lines == [f"error: {root}/filelists/train.txt: none of the 1 clips is usable (0 missing folders, "
                         "0 without audio.wav, 1 with fewer than 16 frames)"]
    else:
        assert len(lines) == 1 and lines[0].startswith(
            f"error: {root}/filelists/train.txt: no usable sample in 100 draws from 1 clips (failed draws: ")
    assert not out.exists()  # nothing written


def test_torchrun_two_processes_on_cpu(data, tmp_path):
    """DistributedDataParallel (gloo) with the single-process command unchanged; rank 0 writes."""
    out = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         os.path.join(ROOT, "color_syncnet_train.py"), *common_args(data, out, "--max_steps", "2", "--hparams",
                                                                    EXPERT_HP.replace("size=2", "size=4"))],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    load_model(SyncNet_color(), out / "checkpoint_step000000002.pth")
    steps = [r["step"] for r in read_log(out) if r["phase"] == "train" and r["name"] == "loss"]
    assert steps == ["1", "2"]  # one writer
