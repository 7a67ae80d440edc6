"""What each stage trains (SPEC section 8): the expert, the generator, the generator with GAN.

The loop, checkpoints, logs and devices are training.Trainer's; these classes
only build networks and define a training step and an eval step.
"""
import os

import numpy as np
import torch

import losses
from checkpoints import load_model, unwrap
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
        self.model = self.env.wrap(SyncNet_color().to(self.device))
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
        self.syncnet = SyncNet_color().to(self.device)
        load_model(self.syncnet, self.args.syncnet_checkpoint_path, self.device)
        self.syncnet.eval()
        for p in self.syncnet.parameters():
            p.requires_grad = False
        self.model = self.env.wrap(Wav2Lip().to(self.device))
        self.optimizer = self.make_optimizer(self.model, hp.initial_learning_rate, self.betas())
        self.scaler = self.env.grad_scaler()
        self.nets[""] = (self.model, self.optimizer)
        self.state["syncnet_wt"] = hp.syncnet_wt
        self.last_batch = None

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
        self.disc = self.env.wrap(Wav2Lip_disc_qual().to(self.device))
        self.disc_optimizer = self.make_optimizer(self.disc, self.hp.disc_initial_learning_rate, self.betas())
        self.disc_scaler = self.env.grad_scaler()
        self.nets["disc_"] = (self.disc, self.disc_optimizer)

    def betas(self):
        return (0.5, 0.999)

    def gan_losses(self, disc, g, parts):
        """Adds the generator's adversarial loss and the discriminator's real/fake losses to parts."""
        with self.env.autocast():
            if self.hp.disc_wt > 0:
                parts["perceptual"] = losses.adversarial_loss(unwrap(disc), g)
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
