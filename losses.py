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


def expert_input(g, expert_size):
    """The expert's face input for generated windows g (B, 3, T, S, S): (B, 15, E/2, E), E = expert_size.

    An expert smaller than the generator (the published 96 one judging a 288 generator)
    sees the lower halves downscaled by area interpolation (an average over 3x3 pixels
    from 288 to 96), through which gradients flow.
    """
    x = stack_lower_halves(g)  # (B, 15, S/2, S)
    if x.size(-1) != expert_size:
        x = F.interpolate(x, size=(expert_size // 2, expert_size), mode="area")
    return x


def sync_loss(syncnet, mel, g):
    """The frozen expert's BCE of "in sync" for generated windows g against their mel (B, 1, 80, 16)."""
    a, v = syncnet(mel, expert_input(g, syncnet.img_size))
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


def wasserstein_critic_scores(critic, real, fake, penalty_weight=10., grad_scale=1.):
    """(E[D(real)], E[D(fake)], gradient penalty) of a WGAN-GP critic, from ONE forward pass.

    Gulrajani et al. 2017: the critic minimises E[D(fake)] - E[D(real)] + penalty, with
    penalty = lambda * E[(||grad D(x_hat)||_2 - 1)^2] at x_hat = e * real + (1 - e) * fake,
    e ~ U[0, 1] drawn per sample. The critic scores frames (B, 3, T, H, W) -> (T*B, 1), so a
    sample is one frame: e and the gradient norm are per (b, t). One pass over real, fake and
    x_hat keeps it DistributedDataParallel-safe. grad_scale: the AMP loss scale, so that
    float16 gradients of D(x_hat) do not underflow (they are unscaled before the norm).
    """
    batch, _, frames = real.shape[:3]
    e = torch.rand(batch, 1, frames, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (e * real + (1 - e) * fake).detach().requires_grad_(True)
    scores = critic(torch.cat([real, fake, x_hat], dim=0)).view(frames, 3 * batch)  # time-major rows
    real_score, fake_score, hat_score = scores.float().split(batch, dim=1)
    grad, = torch.autograd.grad(hat_score.sum() * grad_scale, x_hat, create_graph=True)
    norms = (grad.float() / grad_scale).transpose(1, 2).flatten(2).norm(dim=2)  # (B, T)
    penalty = penalty_weight * ((norms - 1) ** 2).mean()
    return real_score.mean(), fake_score.mean(), penalty


def wasserstein_generator_loss(critic, g):
    """The generator's adversarial term against a Wasserstein critic: -E[D(g)]."""
    return -critic(g).float().mean()
