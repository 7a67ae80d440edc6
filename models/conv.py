"""Building blocks shared by the three Wav2Lip networks.

Attribute names (`conv_block`, Sequential indices) fix the state-dict names of
the published checkpoints: do not rename.
"""
from torch import nn

from hparams import IMG_SIZES


class Conv2d(nn.Module):
    """Conv + BatchNorm (+ input when residual) + ReLU."""

    def __init__(self, cin, cout, kernel_size, stride, padding, residual=False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding),
                                        nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x):
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class nonorm_Conv2d(nn.Module):
    """Conv + LeakyReLU(0.01), no normalisation (the visual quality discriminator)."""

    def __init__(self, cin, cout, kernel_size, stride, padding):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding))
        self.act = nn.LeakyReLU(0.01)

    def forward(self, x):
        return self.act(self.conv_block(x))


class Conv2dTranspose(nn.Module):
    """Transposed conv + BatchNorm + ReLU."""

    def __init__(self, cin, cout, kernel_size, stride, padding, output_padding=0):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, output_padding),
            nn.BatchNorm2d(cout))
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv_block(x))


def residual(c):
    return Conv2d(c, c, 3, 1, 1, residual=True)


def residuals(c, n):
    return [residual(c) for _ in range(n)]


def upsample(cin, cout):
    """Transposed conv doubling the spatial size (3x3, stride 2, output_padding 1)."""
    return Conv2dTranspose(cin, cout, 3, 2, 1, output_padding=1)


def check_img_size(img_size):
    """The face size a network is built for: 96 (the published system) or 288 (HD)."""
    if img_size not in IMG_SIZES:
        raise ValueError(f"img_size must be one of {', '.join(map(str, IMG_SIZES))}, got {img_size!r}")
    return int(img_size)


def audio_encoder(residuals_at_256):
    """Mel window (B, 1, 80, 16) -> embedding (B, 512, 1, 1).

    SyncNet has two residual blocks at 256 channels, the generator one (13 layers).
    """
    return nn.Sequential(
        Conv2d(1, 32, 3, 1, 1), residual(32), residual(32),
        Conv2d(32, 64, 3, (3, 1), 1), residual(64), residual(64),  # (27, 16)
        Conv2d(64, 128, 3, 3, 1), residual(128), residual(128),  # (9, 6)
        Conv2d(128, 256, 3, (3, 2), 1), *[residual(256) for _ in range(residuals_at_256)],  # (3, 3)
        Conv2d(256, 512, 3, 1, 0), Conv2d(512, 512, 1, 1, 0))  # (1, 1)


def fold_time(x):
    """(B, C, T, H, W) -> (T*B, C, H, W), time-major as the reference folds it."""
    B, C, T, H, W = x.shape
    return x.permute(2, 0, 1, 3, 4).reshape(T * B, C, H, W)


def unfold_time(x, batch_size):
    """(T*B, C, H, W) -> (B, C, T, H, W): the inverse of fold_time."""
    TB, C, H, W = x.shape
    return x.reshape(TB // batch_size, batch_size, C, H, W).permute(1, 2, 0, 3, 4)
