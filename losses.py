"""The losses of the three trainers (SPEC section 8), computed in float32 even under autocast."""
import torch
from torch.nn import functional as F

from hparams import SYNCNET_T


def _bce(prob, target):
    # binary_cross_entropy refuses float16 inputs under autocast: compute it in float32.
    with torch.autocast(prob.device.type, enabled=False):
        return F.binary_cross_entropy(prob.float(), target.float())


def cosine_loss(audio_embedding, face_embedding, y):
    """BCE of the embeddings' cosine (the sync probability, in [0, 1]) against labels y (B, 1)."""
    d = F.cosine_similarity(audio_embedding.float(), face_embedding.float())
    return _bce(d.unsqueeze(1), y)


def stack_lower_halves(g):
    """(B, 3, T, H, W) generated window -> (B, 3*T, H/2, W), frames on channels as the expert takes them."""
    g = g[:, :, :, g.size(3) // 2:]
    return torch.cat([g[:, :, i] for i in range(SYNCNET_T)], dim=1)


def sync_loss(syncnet, mel, g):
    """The frozen expert's BCE of "in sync" for generated windows g against their mel (B, 1, 80, 16)."""
    a, v = syncnet(mel, stack_lower_halves(g))
    return cosine_loss(a, v, torch.ones(len(g), 1, device=g.device))


def l1_loss(g, gt):
    return F.l1_loss(g.float(), gt.float())


def adversarial_loss(disc, g):
    """The generator's loss against the quality discriminator: BCE(D(g), real)."""
    pred = disc(g)
    return _bce(pred, torch.ones_like(pred))


def discriminator_losses(disc, real, fake):
    """(BCE(D(real), 1), BCE(D(fake), 0)) from ONE forward pass of both batches.

    One pass (not two as the reference) gives the same gradients and is safe
    under DistributedDataParallel. The disc folds time first: rows are
    (t, real batch then fake batch) for each t.
    """
    batch = len(real)
    pred = disc(torch.cat([real, fake], dim=0)).view(-1, 2 * batch)  # (T, 2B)
    real_pred, fake_pred = pred[:, :batch], pred[:, batch:]
    return _bce(real_pred, torch.ones_like(real_pred)), _bce(fake_pred, torch.zeros_like(fake_pred))
