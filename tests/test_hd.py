"""HD Wav2Lip (HD.md): the three networks at 288, checkpoints that carry their size, the
published 96 expert judging a 288 generator, WGAN-GP, and the notebook's commands at 288."""
import json
import os
from contextlib import nullcontext
from types import SimpleNamespace

import cv2
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import losses
from checkpoints import (CheckpointError, check_checkpoint_size, checkpoint_img_size, load_checkpoint, load_model,
                         load_sized_model, save_checkpoint)
from cli import UserError
from conftest import FIXTURES
from hparams import hparams, parse_overrides
from models import SyncNet_color, Wav2Lip, Wav2Lip_disc_qual
from models.conv import fold_time
from synthetic import recipe_state_dict
from trainers import GeneratorTrainer, WassersteinTrainer
from training import Trainer

NETWORKS = {"wav2lip": Wav2Lip, "syncnet_color": SyncNet_color, "wav2lip_disc_qual": Wav2Lip_disc_qual}
# HD.md: 48.5 M, 19.9 M, 18.2 M (measured there with the fork's PReLU: one more parameter per block).
PARAMETERS_288 = {"wav2lip": 48_520_755, "syncnet_color": 19_881_024, "wav2lip_disc_qual": 18_210_561}


def meta(cls, img_size=288, **kwargs):
    """The network on the meta device: shapes without memory or arithmetic."""
    with torch.device("meta"):
        return cls(img_size, **kwargs).eval()


def output_sizes(modules, run):
    """Spatial size (H, W) of each module's output during run()."""
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[2:]))) for m in modules]
    with torch.no_grad():
        result = run()
    for h in hooks:
        h.remove()
    return sizes, result


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_state_dict_layout_and_parameters_at_288(name):
    with open(os.path.join(FIXTURES, "hd_checkpoint_keys.json")) as f:
        layout = json.load(f)[name]
    state = meta(NETWORKS[name]).state_dict()
    assert [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in state.items()] == layout["state_dict"]
    assert sum(p.numel() for p in meta(NETWORKS[name]).parameters()) == PARAMETERS_288[name] == layout["parameters"]
    assert not any(k.endswith("act.weight") for k in state)  # ReLU, not the fork's PReLU
    audio_96 = {k: v.shape for k, v in meta(NETWORKS[name], 96).state_dict().items() if k.startswith("audio_")}
    assert audio_96 == {k: v.shape for k, v in state.items() if k.startswith("audio_")}  # unchanged


def test_generator_288_follows_the_table():
    g = meta(Wav2Lip)
    mel, face = torch.zeros(2, 1, 80, 16, device="meta"), torch.zeros(2, 6, 288, 288, device="meta")
    blocks = [*g.face_encoder_blocks, *g.face_decoder_blocks]
    sizes, out = output_sizes(blocks, lambda: g(mel, face))
    encoder = [288, 144, 72, 36, 18, 9, 5, 3, 1]
    assert [h for h, w in sizes] == encoder + encoder[::-1] and all(h == w for h, w in sizes)
    assert out.shape == (2, 3, 288, 288)
    assert g(torch.zeros(1, 5, 1, 80, 16, device="meta"),
             torch.zeros(1, 6, 5, 288, 288, device="meta")).shape == (1, 3, 5, 288, 288)


def test_expert_288_follows_the_table():
    e = meta(SyncNet_color)
    sizes, (a, v) = output_sizes(e.face_encoder, lambda: e(torch.zeros(3, 1, 80, 16, device="meta"),
                                                           torch.zeros(3, 15, 144, 288, device="meta")))
    distinct = [s for i, s in enumerate(sizes) if i == 0 or s != sizes[i - 1]]
    assert distinct == [(144, 288), (142, 286), (140, 142), (70, 71), (35, 36), (18, 18), (9, 9), (4, 4),
                        (2, 2), (1, 1)]
    assert a.shape == v.shape == (3, 512)


@pytest.mark.parametrize("sigmoid", [True, False])
def test_discriminator_288_follows_the_table(sigmoid):
    d = meta(Wav2Lip_disc_qual, sigmoid=sigmoid)
    sizes, out = output_sizes(d.face_encoder_blocks, lambda: d(torch.zeros(2, 3, 5, 288, 288, device="meta")))
    assert sizes == [(144, 288), (144, 144), (72, 72), (36, 36), (18, 18), (9, 9), (5, 5), (3, 3), (1, 1)]
    assert out.shape == (10, 1)
    assert list(d.state_dict()) == list(meta(Wav2Lip_disc_qual).state_dict())  # the critic: same layout


def test_sizes_other_than_96_and_288_are_refused():
    assert Wav2Lip().img_size == 96 and list(meta(Wav2Lip, 96).state_dict()) == list(Wav2Lip().state_dict())
    with pytest.raises(ValueError, match="img_size must be one of 96, 288, got 128"):
        SyncNet_color(128)
    assert parse_overrides("img_size=288").img_size == 288
    with pytest.raises(ValueError, match="bad value for img_size: expected one of 96, 288"):
        parse_overrides("img_size=192")


@pytest.fixture(scope="module")
def expert_288(tmp_path_factory):
    """A 288 expert written by save_checkpoint, and its weights."""
    model = SyncNet_color(288)
    path = tmp_path_factory.mktemp("hd") / "expert_288.pth"
    save_checkpoint(path, model, global_step=5)
    return path, model.state_dict()


def test_checkpoints_carry_their_size(expert_288, tmp_path):
    path, state = expert_288
    raw = torch.load(path, weights_only=True)
    assert raw["img_size"] == 288 and checkpoint_img_size(path) == 288
    model, checkpoint = load_sized_model(SyncNet_color, path)
    assert model.img_size == 288 and checkpoint["global_step"] == 5
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    load_model(SyncNet_color(288), path)
    # files without the record: told by their layout (a published file is 96, a 288 one 288)
    published = tmp_path / "lipsync_expert.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in SyncNet_color().state_dict().items()}}, published,
               _use_new_zipfile_serialization=False)
    assert checkpoint_img_size(published) == 96 and load_sized_model(SyncNet_color, published)[0].img_size == 96
    bare = tmp_path / "bare.pth"
    torch.save(state, bare)
    assert checkpoint_img_size(bare) == 288


def test_size_mismatch_is_one_clear_line(expert_288):
    path, _ = expert_288
    for load in (lambda: load_model(SyncNet_color(), path), lambda: load_sized_model(SyncNet_color, path, img_size=96)):
        with pytest.raises(CheckpointError) as error:
            load()
        assert str(error.value) == (f"{path}: a 288x288 SyncNet_color checkpoint (img_size 288), "
                                    "but a 96x96 one is required here (img_size 96)")
    check_checkpoint_size(SyncNet_color(), {"state_dict": {}}, "x.pth")  # no record, no HD layout: 96
    # an expert larger than the generator cannot judge it
    trainer = SimpleNamespace(device=torch.device("cpu"), hp=hparams)
    with pytest.raises(UserError, match="a 288x288 expert cannot judge a 96x96 generator"):
        GeneratorTrainer.load_expert(trainer, path)


def test_published_expert_judges_an_hd_generator_on_downscaled_faces():
    torch.manual_seed(0)
    expert = SyncNet_color().eval()
    mel = torch.randn(1, 1, 80, 16)
    g = torch.rand(1, 3, 5, 288, 288, requires_grad=True)
    loss = losses.sync_loss(expert, mel, g)
    frames = F.interpolate(fold_time(g.detach()), size=(96, 96), mode="area")  # (T*B, 3, 96, 96)
    g96 = frames.view(5, 1, 3, 96, 96).permute(1, 2, 0, 3, 4)  # (B, 3, T, 96, 96)
    torch.testing.assert_close(loss, losses.sync_loss(expert, mel, g96), rtol=1e-6, atol=1e-6)
    loss.backward()
    assert g.grad[:, :, :, :144].abs().sum() == 0 and g.grad[:, :, :, 144:].abs().min(dim=-1)[0].gt(0).all()
    assert torch.equal(losses.expert_input(g, 288), losses.stack_lower_halves(g))  # a 288 expert as it is


class LinearCritic(nn.Module):
    """D(frame) = <w, frame>: its gradient is w everywhere, so the penalty is lambda * (||w|| - 1)^2."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):  # (B, 3, T, H, W) -> (T*B, 1), time-major as the discriminator
        return (fold_time(x) * self.w).sum(dim=(1, 2, 3)).view(-1, 1)


@pytest.mark.parametrize("norm", [1.0, 0.3, 2.5])
def test_gradient_penalty_of_a_linear_critic(norm):
    torch.manual_seed(1)
    w = torch.randn(3, 8, 8, dtype=torch.float64)
    critic = LinearCritic(w * norm / w.norm())
    real, fake = torch.rand(4, 3, 5, 8, 8, dtype=torch.float64), torch.rand(4, 3, 5, 8, 8, dtype=torch.float64)
    real_score, fake_score, penalty = losses.wasserstein_critic_scores(critic, real, fake, penalty_weight=10.)
    assert penalty.item() == pytest.approx(10 * (norm - 1) ** 2, abs=1e-5)  # computed in float32
    assert real_score.item() == pytest.approx(critic(real).mean().item())
    assert fake_score.item() == pytest.approx(critic(fake).mean().item())
    penalty.backward()  # the penalty trains the critic (double backward)
    assert (critic.w.grad.abs().sum() > 0) == (norm != 1.0)


def test_one_critic_step_raises_the_wasserstein_estimate():
    torch.manual_seed(0)
    critic = Wav2Lip_disc_qual(96, sigmoid=False)
    optimizer = torch.optim.Adam(critic.parameters(), lr=hparams.disc_initial_learning_rate,
                                 betas=(hparams.wgan_beta1, hparams.wgan_beta2))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    trainer = SimpleNamespace(disc=critic, disc_optimizer=optimizer, disc_scaler=scaler, hp=hparams,
                              env=SimpleNamespace(autocast=nullcontext),
                              optimizer_step=lambda *a: Trainer.optimizer_step(None, *a))
    real, fake = torch.rand(1, 3, 1, 96, 96), 0.5 * torch.rand(1, 3, 1, 96, 96)

    def estimate():
        with torch.no_grad():
            return (critic(real).mean() - critic(fake).mean()).item()

    before = estimate()
    metrics = WassersteinTrainer.critic_step(trainer, real, fake)
    assert set(metrics) == {"critic_real", "critic_fake", "gradient_penalty"}
    assert estimate() > before


def read_log_names(folder, phase):
    import csv
    with open(os.path.join(folder, "log.csv"), newline="") as f:
        return {r["name"] for r in csv.DictReader(f) if r["phase"] == phase}


def test_notebook_commands_at_288(tmp_path):
    """preprocess -> generate_filelists -> color_syncnet_train -> wav2lip_train -> wloss, at img_size=288.

    One training step each (288 networks cost ~5-10x the 96 ones); hq_wav2lip_train.py is the same
    loop as wloss without the critic (tested at 96 in test_training.py).
    """
    import color_syncnet_train
    import generate_filelists
    import preprocess
    import wav2lip_train
    import wloss_hq_wav2lip_train
    from face_detection import S3FD
    from synthetic import write_talking_video

    videos, data = tmp_path / "videos", tmp_path / "lrs2_preprocessed_288x288"
    weights = str(tmp_path / "s3fd.pth")
    torch.save(recipe_state_dict(S3FD()), weights)
    for clip, seed in (("00001", 1), ("00002", 2)):
        (videos / "group").mkdir(parents=True, exist_ok=True)
        write_talking_video(videos / "group" / f"{clip}.mp4", 0.8, width=128, height=96, fps=25, seed=seed)
    preprocess.main(["--data_root", str(videos), "--preprocessed_root", str(data), "--ngpu", "0",
                     "--batch_size", "8", "--detector", weights])
    lists = tmp_path / "filelists"
    generate_filelists.main(["--data_root", str(data), "--output_dir", str(lists), "--split_by", "clip",
                             "--val_fraction", "0.5"])

    saved = tmp_path / "savedmodel"
    common = ["--data_root", str(data), "--filelists_dir", str(lists), "--num_workers", "0", "--device", "cpu"]
    hd = "img_size=288,syncnet_batch_size=2,batch_size=1,eval_steps=1,save_optimizer_state=false"
    color_syncnet_train.main([*common, "--checkpoint_dir", str(saved / "expert"), "--max_steps", "1",
                              "--hparams", hd])
    expert = saved / "expert" / "checkpoint_step000000001.pth"
    assert checkpoint_img_size(expert) == 288
    load_model(SyncNet_color(288), expert)

    # the generator against the published-style 96 expert (no img_size record): downscaled faces
    published = tmp_path / "lipsync_expert.pth"
    torch.save({"state_dict": SyncNet_color().state_dict()}, published)
    gen_dir = saved / "wav2lip"
    wav2lip_train.main([*common, "--checkpoint_dir", str(gen_dir), "--syncnet_checkpoint_path", str(published),
                        "--max_steps", "1", "--hparams", f"{hd},syncnet_switch_threshold=100"])
    generator = load_checkpoint(gen_dir / "checkpoint_step000000001.pth")
    assert generator["img_size"] == generator["hparams"]["img_size"] == 288 and generator["syncnet_wt"] == 0.01
    assert cv2.imread(str(gen_dir / "samples_step000000001" / "0_4.jpg")).shape == (288, 4 * 288, 3)
    assert os.path.getsize(gen_dir / "loss_curves.png") > 1000

    # wloss resumes the generator without being told the size, with the 288 expert
    wloss_dir = saved / "wloss"
    wloss_args = [*common, "--checkpoint_dir", str(wloss_dir), "--syncnet_checkpoint_path", str(expert),
                  "--checkpoint_path", str(gen_dir / "checkpoint_step000000001.pth"), "--max_steps", "2",
                  "--hparams", "batch_size=1"]
    with pytest.raises(UserError, match=r"a 288x288 checkpoint \(img_size 288\), but --hparams img_size=96 asks "
                                        r"for 96x96"):
        wloss_hq_wav2lip_train.main([*wloss_args, "--hparams", "img_size=96"])
    wloss_hq_wav2lip_train.main(wloss_args)
    assert checkpoint_img_size(wloss_dir / "checkpoint_step000000002.pth") == 288
    critic = wloss_dir / "disc_checkpoint_step000000002.pth"
    assert checkpoint_img_size(critic) == 288
    load_model(Wav2Lip_disc_qual(288), critic)  # the discriminator's state-dict layout
    assert {"critic_real", "critic_fake", "gradient_penalty", "perceptual"} <= read_log_names(wloss_dir, "train")
