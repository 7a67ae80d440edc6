"""What each stage trains (SPEC section 8): the expert, the generator, the generator with GAN,
and the generator with a Wasserstein critic (WGAN-GP, wloss_hq_wav2lip_train.py).

Networks are built at hp.img_size (96 or 288); the frozen expert at its checkpoint's size.

The loop, checkpoints, logs and devices are training.Trainer's; these classes
only build networks and define a training step and an eval step.
"""
import os

import numpy as np
import torch

import losses
from checkpoints import load_sized_model, unwrap
from cli import UserError
from models import SyncNet_color, Wav2Lip, Wav2Lip_disc_qual
from training import Trainer


class ExpertTrainer(Trainer):
    """color_syncnet_train.py: the lip-sync expert, BCE of cosine(audio, face) against in/off sync."""

    kind = "syncnet"
    batch_size_field = "syncnet_batch_size"
    checkpoint_interval_field = "syncnet_checkpoint_interval"
    eval_interval_field = "syncnet_eval_interval"
    eval_steps_field = "syncnet_eval_steps"

    def build(self):
        self.model = self.env.wrap(SyncNet_color(self.hp.img_size).to(self.device))
        self.optimizer = self.make_optimizer(self.model, self.hp.syncnet_lr)
        self.scaler = self.env.grad_scaler()
        self.nets[""] = (self.model, self.optimizer)

    def compute(self, model, batch):
        x, mel, y = batch
        with self.env.autocast():
            a, v = model(mel, x)
        loss = losses.cosine_loss(a, v, y)
        sync_prob = torch.nn.functional.cosine_similarity(a.float(), v.float())
        accuracy = ((sync_prob > 0.5).float() == y[:, 0]).float().mean()
        return loss, accuracy

    def train_step(self, batch):
        self.model.train()
        loss, accuracy = self.compute(self.model, batch)
        self.optimizer_step(loss, self.optimizer, self.scaler)
        return {"loss": loss.item(), "accuracy": accuracy.item()}

    def eval_step(self, batch):
        model = unwrap(self.model).eval()
        loss, accuracy = self.compute(model, batch)
        return {"loss": loss.item(), "accuracy": accuracy.item()}


class GeneratorTrainer(Trainer):
    """wav2lip_train.py: the generator, L1 + (once eval sync loss < threshold) the frozen expert's sync loss."""

    kind = "wav2lip"
    eval_at_step_one = True
    after_switch_field = "syncnet_wt_after_switch"
    always_sync_loss = False  # the reference skips the expert while syncnet_wt is 0

    def build(self):
        hp = self.hp
        self.syncnet = self.load_expert(self.args.syncnet_checkpoint_path)
        self.model = self.env.wrap(Wav2Lip(hp.img_size).to(self.device))
        self.optimizer = self.make_optimizer(self.model, hp.initial_learning_rate, self.betas())
        self.scaler = self.env.grad_scaler()
        self.nets[""] = (self.model, self.optimizer)
        self.state["syncnet_wt"] = hp.syncnet_wt
        self.last_batch = None

    def load_expert(self, path):
        """The frozen expert, at its checkpoint's size: the generator's, or smaller (its input is then
        downscaled, losses.expert_input: the published 96 expert judges a 288 generator)."""
        syncnet, _ = load_sized_model(SyncNet_color, path, self.device)
        if syncnet.img_size > self.hp.img_size:
            raise UserError(f"{path}: a {syncnet.img_size}x{syncnet.img_size} expert cannot judge a "
                            f"{self.hp.img_size}x{self.hp.img_size} generator (img_size {self.hp.img_size}); "
                            f"train at --hparams img_size={syncnet.img_size} or use a "
                            f"{self.hp.img_size}x{self.hp.img_size} expert")
        syncnet.eval()
        for p in syncnet.parameters():
            p.requires_grad = False
        return syncnet

    def betas(self):
        return (0.9, 0.999)

    def generate(self, model, batch):
        """g (B, 3, T, H, W), {"l1", "sync"} for a batch; the sync loss is 0 while unused."""
        x, indiv_mels, mel, gt = batch
        with self.env.autocast():
            g = model(indiv_mels, x)
            use_sync = self.always_sync_loss or self.state["syncnet_wt"] > 0 or not model.training
            sync = losses.sync_loss(self.syncnet, mel, g) if use_sync else torch.zeros((), device=self.device)
        return g, {"l1": losses.l1_loss(g, gt), "sync": sync}

    def train_step(self, batch):
        self.model.train()
        g, parts = self.generate(self.model, batch)
        sw = self.state["syncnet_wt"]
        loss = sw * parts["sync"] + (1. - sw) * parts["l1"]
        self.optimizer_step(loss, self.optimizer, self.scaler)
        self.last_batch = (batch[0], g.detach(), batch[3])
        return {name: value.item() for name, value in parts.items()}

    def eval_step(self, batch):
        _, parts = self.generate(unwrap(self.model).eval(), batch)
        return {name: value.item() for name, value in parts.items()}

    def after_eval(self, means):
        if means["sync"] < self.hp.syncnet_switch_threshold:
            self.state["syncnet_wt"] = getattr(self.hp, self.after_switch_field)

    def save_extras(self, folder):
        if self.last_batch is not None:
            save_sample_images(*self.last_batch, self.global_step, folder)


class GANTrainer(GeneratorTrainer):
    """hq_wav2lip_train.py: the generator with the visual quality discriminator."""

    eval_at_step_one = False
    after_switch_field = "hq_syncnet_wt_after_switch"
    eval_steps_field = "hq_eval_steps"
    always_sync_loss = True

    def build(self):
        super().build()
        self.disc = self.env.wrap(self.make_disc().to(self.device))
        self.disc_optimizer = self.make_optimizer(self.disc, self.hp.disc_initial_learning_rate, self.betas())
        self.disc_scaler = self.env.grad_scaler()
        self.nets["disc_"] = (self.disc, self.disc_optimizer)

    def make_disc(self):
        return Wav2Lip_disc_qual(self.hp.img_size)

    def betas(self):
        return (0.5, 0.999)

    def adversarial(self, disc, g):
        """The generator's adversarial term: BCE(D(g), real)."""
        return losses.adversarial_loss(disc, g)

    def gan_losses(self, disc, g, parts):
        """Adds the generator's adversarial loss to parts; returns the generator's total loss."""
        with self.env.autocast():
            if self.hp.disc_wt > 0:
                parts["perceptual"] = self.adversarial(unwrap(disc), g)
            else:
                parts["perceptual"] = torch.zeros((), device=self.device)
        sw, dw = self.state["syncnet_wt"], self.hp.disc_wt
        return sw * parts["sync"] + dw * parts["perceptual"] + (1. - sw - dw) * parts["l1"]

    def train_step(self, batch):
        self.model.train()
        self.disc.train()
        g, parts = self.generate(self.model, batch)
        loss = self.gan_losses(self.disc, g, parts)
        self.optimizer_step(loss, self.optimizer, self.scaler)
        with self.env.autocast():
            real, fake = losses.discriminator_losses(self.disc, batch[3], g.detach())
        self.optimizer_step(real + fake, self.disc_optimizer, self.disc_scaler)
        self.last_batch = (batch[0], g.detach(), batch[3])
        return {**{name: value.item() for name, value in parts.items()},
                "disc_real": real.item(), "disc_fake": fake.item()}

    def eval_step(self, batch):
        disc = unwrap(self.disc).eval()
        g, parts = self.generate(unwrap(self.model).eval(), batch)
        self.gan_losses(disc, g, parts)
        with self.env.autocast():
            real, fake = losses.discriminator_losses(disc, batch[3], g)
        return {**{name: value.item() for name, value in parts.items()},
                "disc_real": real.item(), "disc_fake": fake.item()}


class WassersteinTrainer(GANTrainer):
    """wloss_hq_wav2lip_train.py: the GAN stage with a WGAN-GP critic (Gulrajani et al. 2017).

    The critic is the discriminator's network without its sigmoid (same state-dict
    layout, `disc_` checkpoints). Generator loss: sw * sync + disc_wt * (-E[D(g)]) +
    (1 - sw - disc_wt) * L1, as hq_wav2lip_train.py. Critic loss: E[D(fake)] - E[D(real)]
    + wgan_gp_weight * gradient penalty, both terms trained. With --critic_steps k, each
    step loads k batches: the critic is updated on the first k - 1 (their fakes generated
    without gradients), then generator and critic on the last one as in hq_wav2lip_train.py,
    so k critic updates, each on fresh data, separate two generator updates.
    """

    def build(self):
        if self.args.critic_steps < 1:
            raise UserError(f"--critic_steps must be at least 1, got {self.args.critic_steps}")
        super().build()
        self.batches_per_step = self.args.critic_steps

    def make_disc(self):
        return Wav2Lip_disc_qual(self.hp.img_size, sigmoid=False)

    def betas(self):
        return (self.hp.wgan_beta1, self.hp.wgan_beta2)

    def adversarial(self, critic, g):
        return losses.wasserstein_generator_loss(critic, g)

    def critic_step(self, real, fake):
        """One critic update on a batch of real and (detached) generated windows; returns its metrics."""
        grad_scale = self.disc_scaler.get_scale() if self.disc_scaler.is_enabled() else 1.
        with self.env.autocast():
            real_score, fake_score, penalty = losses.wasserstein_critic_scores(
                self.disc, real, fake, self.hp.wgan_gp_weight, grad_scale)
        self.optimizer_step(fake_score - real_score + penalty, self.disc_optimizer, self.disc_scaler)
        return {"critic_real": real_score.item(), "critic_fake": fake_score.item(),
                "gradient_penalty": penalty.item()}

    def train_step(self, batch):
        self.model.train()
        self.disc.train()
        batches = list(zip(*(t.chunk(self.batches_per_step) for t in batch)))  # k batches
        critic = []
        for x, indiv_mels, _, gt in batches[:-1]:
            with torch.no_grad(), self.env.autocast():
                fake = self.model(indiv_mels, x)
            critic.append(self.critic_step(gt, fake))
        batch = batches[-1]
        g, parts = self.generate(self.model, batch)
        loss = self.gan_losses(self.disc, g, parts)
        self.optimizer_step(loss, self.optimizer, self.scaler)
        critic.append(self.critic_step(batch[3], g.detach()))
        self.last_batch = (batch[0], g.detach(), batch[3])
        return {**{name: value.item() for name, value in parts.items()},
                **{name: float(np.mean([c[name] for c in critic])) for name in critic[0]}}

    def eval_step(self, batch):
        critic = unwrap(self.disc).eval()
        g, parts = self.generate(unwrap(self.model).eval(), batch)
        self.gan_losses(critic, g, parts)
        with self.env.autocast():
            real, fake = (critic(faces).float().mean() for faces in (batch[3], g))
        return {**{name: value.item() for name, value in parts.items()},
                "critic_real": real.item(), "critic_fake": fake.item(), "wasserstein": (real - fake).item()}


def save_sample_images(x, g, gt, step, folder):
    """Collages reference | masked input | generated | ground truth, one jpg per (batch item, frame).

    Written to <folder>/samples_step{step:09d}/{b}_{t}.jpg as the reference does.
    """
    import cv2

    def to_images(t):  # (B, C, T, H, W) in [0, 1] -> (B, T, H, W, C) uint8 (BGR)
        return (t.detach().float().cpu().numpy().transpose(0, 2, 3, 4, 1) * 255.).astype(np.uint8)

    x, g, gt = to_images(x), to_images(g), to_images(gt)
    refs, inps = x[..., 3:], x[..., :3]
    collage = np.concatenate((refs, inps, g, gt), axis=-2)  # (B, T, H, 4W, 3)
    sample_dir = os.path.join(folder, f"samples_step{step:09d}")
    os.makedirs(sample_dir, exist_ok=True)
    for b, frames in enumerate(collage):
        for t, frame in enumerate(frames):
            cv2.imwrite(os.path.join(sample_dir, f"{b}_{t}.jpg"), frame)
