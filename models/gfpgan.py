"""GFPGAN v1.4's generator (GFPGANv1Clean), in plain PyTorch, with the published state-dict names.

A U-Net reads the 512x512 face; its bottleneck becomes 16 style codes (one per
decoder layer) and its up path gives, per resolution, an SFT scale and shift
that condition a StyleGAN2 decoder (the "clean" variant: bilinear resampling,
no compiled ops). Built with the published configuration (out_size=512,
num_style_feat=512, channel_multiplier=2, num_mlp=8, input_is_latent=True,
different_w=True, narrow=1, sft_half=True); `GFPGANv1.4.pth["params_ema"]`
loads strict. Input and output: RGB in [-1, 1], (N, 3, 512, 512).
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT_SIZE = 512
STYLE_DIM = 512
NUM_MLP = 8
LEVELS = int(math.log2(OUT_SIZE)) - 2               # 7 U-Net levels / decoder resolutions 8..512
NUM_LATENT = 2 * int(math.log2(OUT_SIZE)) - 2       # 16 style codes (different_w)
NUM_NOISE = 2 * LEVELS + 1                          # 15 noise maps, 4, 8, 8, ..., 512, 512
SLOPE = 0.2


def stylegan_channels(multiplier=2, narrow=1.0):
    """Channels per resolution; the decoder uses narrow=1, the U-Net narrow=0.5."""
    c = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * multiplier,
         128: 128 * multiplier, 256: 64 * multiplier, 512: 32 * multiplier}
    return {r: int(v * narrow) for r, v in c.items()}


def resample(x, factor):
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def lrelu(x):
    return F.leaky_relu(x, SLOPE)


class ResBlock(nn.Module):
    """conv3x3, act, resample, conv3x3, act; plus a resampled 1x1 skip without bias."""

    def __init__(self, in_ch, out_ch, *, factor):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, in_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.factor = factor

    def forward(self, x):
        out = F.leaky_relu_(self.conv2(resample(F.leaky_relu_(self.conv1(x), SLOPE), self.factor)), SLOPE)
        return out + self.skip(resample(x, self.factor))


def condition_head(ch):
    return nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.LeakyReLU(SLOPE), nn.Conv2d(ch, ch, 3, padding=1))


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated conv (per sample: weight * style, each output filter / sqrt(sum of squares + 1e-8)).

    A batch of one convolves with its modulated weight, as the original does; a
    larger batch modulates the activations instead, conv(x * s, W) * d, which is
    the same sum without a weight per sample. `gain` multiplies the output (it is
    folded into the demodulation). The style arithmetic stays float32 under autocast.
    """

    def __init__(self, in_ch, out_ch, kernel, *, demodulate, upsample=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel, kernel) / math.sqrt(in_ch * kernel ** 2))
        self.modulation = nn.Linear(STYLE_DIM, in_ch)
        nn.init.zeros_(self.modulation.weight)
        nn.init.ones_(self.modulation.bias)
        self.demodulate, self.upsample = demodulate, upsample

    def forward(self, x, style, gain=1.0):                       # x (N, Cin, H, W), style (N, 512)
        acc = torch.promote_types(self.weight.dtype, torch.float32)  # float32, or float64
        with torch.autocast(x.device.type, enabled=False):
            w = self.weight[0].to(acc)                             # (Cout, Cin, k, k)
            s = F.linear(style.to(acc), self.modulation.weight.to(acc), self.modulation.bias.to(acc))  # (N, Cin)
            if self.demodulate:                                    # (N, Cout)
                d = torch.rsqrt(s.square() @ w.square().sum((2, 3)).t() + 1e-8) * gain
            else:
                d = torch.full((s.shape[0], w.shape[0]), float(gain), dtype=acc, device=s.device)
        if self.upsample:
            x = resample(x, 2)
        padding = w.shape[-1] // 2
        if x.shape[0] == 1:
            w = w * s[0, None, :, None, None] * d[0, :, None, None, None]
            return F.conv2d(x, w.to(x.dtype), padding=padding)
        out = F.conv2d(x * s.to(x.dtype)[:, :, None, None], w.to(x.dtype), padding=padding)
        return out.mul_(d.to(out.dtype)[:, :, None, None])


class StyleConv(nn.Module):
    """Modulated 3x3 conv * sqrt(2), + noise * learned scalar, + bias, activation."""

    def __init__(self, in_ch, out_ch, *, upsample=False):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_ch, out_ch, 3, demodulate=True, upsample=upsample)
        self.weight = nn.Parameter(torch.zeros(1))                 # noise strength
        self.bias = nn.Parameter(torch.zeros(1, out_ch, 1, 1))

    def forward(self, x, style, noise=None):
        out = self.modulated_conv(x, style, gain=math.sqrt(2))
        if noise is None:                                          # the original's fresh noise
            noise = torch.randn(out.shape[0], 1, *out.shape[2:], device=out.device, dtype=out.dtype)
        out = out.add_(self.weight * noise).add_(self.bias)
        return F.leaky_relu_(out, SLOPE)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (no demodulation) + bias, + the previous RGB upsampled 2x."""

    def __init__(self, in_ch):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_ch, 3, 1, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):                     # the RGB sum stays float32 under autocast
        acc = torch.promote_types(self.bias.dtype, torch.float32)
        out = self.modulated_conv(x, style).to(acc) + self.bias.to(acc)
        return out if skip is None else out.add_(resample(skip.to(acc), 2))


class NormStyleCode(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class ConstantInput(nn.Module):
    def __init__(self, ch, size):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, ch, size, size))

    def forward(self, n):
        return self.weight.expand(n, -1, -1, -1)


class StyleGAN2DecoderSFT(nn.Module):
    """The StyleGAN2 ("clean") decoder, its first-half channels after each upsample conv SFT-conditioned."""

    def __init__(self, channels):
        super().__init__()
        mlp = [NormStyleCode()]
        for _ in range(NUM_MLP):                                   # in the file, unused: styles are latents
            mlp += [nn.Linear(STYLE_DIM, STYLE_DIM), nn.LeakyReLU(SLOPE)]
        self.style_mlp = nn.Sequential(*mlp)
        self.constant_input = ConstantInput(channels[4], 4)
        self.style_conv1 = StyleConv(channels[4], channels[4])
        self.to_rgb1 = ToRGB(channels[4])
        self.style_convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        in_ch = channels[4]
        for k in range(LEVELS):
            out_ch = channels[8 << k]
            self.style_convs.append(StyleConv(in_ch, out_ch, upsample=True))
            self.style_convs.append(StyleConv(out_ch, out_ch))
            self.to_rgbs.append(ToRGB(out_ch))
            in_ch = out_ch
        self.noises = nn.Module()
        for i in range(NUM_NOISE):
            size = 2 ** ((i + 5) // 2)                             # 4, 8, 8, 16, 16, ..., 512, 512
            self.noises.register_buffer(f"noise{i}", torch.randn(1, 1, size, size))

    def forward(self, latent, conditions, randomize_noise=False):  # latent (N, 16, 512)
        if randomize_noise:
            noise = [None] * NUM_NOISE
        else:
            noise = [getattr(self.noises, f"noise{i}") for i in range(NUM_NOISE)]
        out = self.style_conv1(self.constant_input(latent.shape[0]), latent[:, 0], noise[0])
        rgb = self.to_rgb1(out, latent[:, 1])
        for k, (scale, shift) in enumerate(conditions):
            j = 2 * k + 1                                          # latents (and noises) j, j+1, j+2 at level k
            out = self.style_convs[2 * k](out, latent[:, j], noise[j])
            same, sft = out.chunk(2, dim=1)                        # sft_half: condition the second half
            out = torch.cat([same, torch.addcmul(shift, sft, scale)], dim=1)
            out = self.style_convs[2 * k + 1](out, latent[:, j + 1], noise[j + 1])
            rgb = self.to_rgbs[k](out, latent[:, j + 2], rgb)
        return rgb


class GFPGANv1Clean(nn.Module):
    """GFPGAN v1.3/v1.4 generator; forward returns (image, [7 U-Net side RGBs, 8x8 ... 512x512])."""

    def __init__(self):
        super().__init__()
        unet, dec = stylegan_channels(narrow=0.5), stylegan_channels(narrow=1.0)
        self.conv_body_first = nn.Conv2d(3, unet[OUT_SIZE], 1)
        self.conv_body_down = nn.ModuleList(
            ResBlock(unet[OUT_SIZE >> k], unet[OUT_SIZE >> (k + 1)], factor=0.5) for k in range(LEVELS))
        self.final_conv = nn.Conv2d(unet[4], unet[4], 3, padding=1)
        self.conv_body_up = nn.ModuleList(
            ResBlock(unet[4 << k], unet[8 << k], factor=2) for k in range(LEVELS))
        self.toRGB = nn.ModuleList(nn.Conv2d(unet[8 << k], 3, 1) for k in range(LEVELS))
        self.final_linear = nn.Linear(unet[4] * 4 * 4, STYLE_DIM * NUM_LATENT)
        self.stylegan_decoder = StyleGAN2DecoderSFT(dec)
        self.condition_scale = nn.ModuleList(condition_head(unet[8 << k]) for k in range(LEVELS))
        self.condition_shift = nn.ModuleList(condition_head(unet[8 << k]) for k in range(LEVELS))

    def forward(self, x, return_rgb=True, randomize_noise=False):
        """x (N, 3, 512, 512) RGB in [-1, 1]. Noise: the stored buffers, or fresh if randomize_noise."""
        feat = lrelu(self.conv_body_first(x))
        skips = []
        for block in self.conv_body_down:
            feat = block(feat)
            skips.append(feat)                                     # 256, 128, ..., 4 px
        feat = lrelu(self.final_conv(feat))                        # (N, 256, 4, 4)
        latent = self.final_linear(feat.flatten(1)).view(-1, NUM_LATENT, STYLE_DIM)
        conditions, rgbs = [], []
        for k in range(LEVELS):
            feat = self.conv_body_up[k](feat + skips[-1 - k])      # (N, C_k, 8 << k, 8 << k)
            conditions.append((self.condition_scale[k](feat), self.condition_shift[k](feat)))
            if return_rgb:
                rgbs.append(self.toRGB[k](feat))
        image = self.stylegan_decoder(latent, conditions, randomize_noise=randomize_noise)
        return image, rgbs


def recipe_state_dict(model):
    """ENHANCER.md's deterministic weights (GOLDEN.md's recipe, extended), under which the golden was made.

    Sorted names, entry k from RandomState(1000 + k): 5-D modulated weights, noise
    buffers and the constant input z; 2-D z / sqrt(fan_in); every other 4-D entry
    z / sqrt(prod(shape[1:])), by shape as in GOLDEN.md, so the decoder's (1, C, 1, 1)
    biases too (ENHANCER.md's text says 0.05 z for them, but the golden was made
    this way: 0.05 z is off by 3% of the output's range); 1-D `*weight` (noise
    strengths) 1 + 0.1 z; the rest (1-D biases) 0.05 z.
    """
    state = model.state_dict()
    out = {}
    for k, name in enumerate(sorted(state)):
        shape = tuple(state[name].shape)
        z = np.random.RandomState(1000 + k).standard_normal(shape)
        if len(shape) == 5 or ".noises." in name or name.endswith("constant_input.weight"):
            value = z
        elif len(shape) == 2:
            value = z / np.sqrt(shape[1])
        elif len(shape) == 4:
            value = z / np.sqrt(np.prod(shape[1:]))
        elif len(shape) == 1 and name.endswith("weight"):
            value = 1 + 0.1 * z
        else:
            value = 0.05 * z
        out[name] = torch.from_numpy(np.asarray(value, dtype=np.float32))
    return out
