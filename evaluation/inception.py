"""pytorch-fid's InceptionV3 (`pt_inception-2015-12-05-6726825d.pth`): 2048-d features for FID.

    net = load_inception(device=device)          # downloads the published file when missing
    feats = net(images)                          # (N, 3, H, W) floats in [0, 1] -> (N, 2048)

Module names equal the published file's entries (torchvision's Inception3
names, with the 1008-way `fc` the file carries but FID does not use), so it
loads strict. The FID variant differs from torchvision's network in two
pooling branches (EVALUATION.md §5): the A, C and first E blocks average
without counting the padding, and the last E block (`Mixed_7c`) max-pools.

`load_inception` returns the network ready for scoring: every batch norm folded
into the convolution before it and the activations channels_last, the layout
oneDNN computes fastest on CPU. The features equal the unfolded network's to
within float rounding (~1e-6); `fast=False` keeps the network as published.
"""
import os

import torch
import torch.nn.functional as F
from torch import nn

FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")
FEATURE_DIM = 2048  # channels of the last block, averaged over its 8x8 positions
INPUT_SIZE = 299  # every image is resized to 299x299 first
FC_CLASSES = 1008  # the TensorFlow graph's classifier; in the file, unused for FID


def default_weights_path():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(root, "checkpoints", os.path.basename(FID_WEIGHTS_URL))


class BasicConv2d(nn.Module):
    """Bias-free convolution, BatchNorm (eps 0.001), ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)

    @torch.no_grad()
    def fold_batch_norm(self):
        """Fold the (eval-mode) batch norm into the convolution: one layer instead of two.

        bn(conv(x)) = gamma * (W x - mean) / sqrt(var + eps) + beta is a convolution
        with each output channel's weights scaled and a bias.
        """
        if isinstance(self.bn, nn.Identity):
            return
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        self.conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        self.conv.bias = nn.Parameter(self.bn.bias - self.bn.running_mean * scale)
        self.bn = nn.Identity()


def _avg_pool(x):
    """The FID variant's 3x3 average of the A, C and first E blocks: padding not counted."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """Mixed_5b/5c/5d: 1x1, 5x5, double 3x3 and pooled branches at 35x35."""

    def __init__(self, in_channels, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool(x)),
        ], 1)


class InceptionB(nn.Module):
    """Mixed_6a: 35x35 -> 17x17 by strided 3x3 convolutions and a max pool."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class InceptionC(nn.Module):
    """Mixed_6b..6e: factorised 7x7 (1x7 then 7x1) branches at 17x17."""

    def __init__(self, in_channels, channels_7x7):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d7 = layer(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(_avg_pool(x))], 1)


class InceptionD(nn.Module):
    """Mixed_7a: 17x17 -> 8x8."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        b7 = x
        for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """Mixed_7b/7c: expanded 1x3 + 3x1 branches at 8x8; `max_pool` for the FID Mixed_7c."""

    def __init__(self, in_channels, max_pool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3),
            self.branch_pool(pooled),
        ], 1)


class FIDInceptionV3(nn.Module):
    """pytorch-fid's InceptionV3 up to the global average pool (its `pool3` features)."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)  # (N, 32, 149, 149)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)  # (N, 32, 147, 147)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)  # max pool -> (N, 64, 73, 73)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)  # max pool -> (N, 192, 35, 35)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)  # (N, 288, 35, 35)
        self.Mixed_6a = InceptionB(288)  # (N, 768, 17, 17)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)  # (N, 1280, 8, 8)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)  # (N, 2048, 8, 8)
        self.fc = nn.Linear(FEATURE_DIM, FC_CLASSES)  # in the published file; not used

    def forward(self, x):
        """(N, 3, H, W) RGB floats in [0, 1] -> (N, 2048) features."""
        return self.pool3(resize_input(x))

    def pool3(self, x):
        """(N, 3, 299, 299) inputs in [-1, 1] -> (N, 2048): the blocks up to the global average pool."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3))  # (N, 2048): the global average pool


def resize_input(x):
    """(N, 3, H, W) floats in [0, 1] -> (N, 3, 299, 299) in [-1, 1], as pytorch-fid prepares them."""
    x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return 2 * x - 1


def prepare_for_inference(model):
    """Fold every batch norm into its convolution and keep activations channels_last, in place.

    On a 2-core CPU this computes the features ~1.6x as fast as the published
    layout (oneDNN's convolutions run natively on NHWC, and a folded layer is one
    pass over the activations instead of two); the features change by ~1e-7.
    """
    model.eval()
    for module in model.modules():
        if isinstance(module, BasicConv2d):
            module.fold_batch_norm()
    return model.to(memory_format=torch.channels_last)


def load_inception(path=None, device="cpu", fast=True):
    """pytorch-fid's InceptionV3 with the weights of `path`, in eval mode on `device`.

    `path` defaults to checkpoints/pt_inception-2015-12-05-6726825d.pth beside
    the code, downloaded when missing (a one-line UserError naming the URL and
    the path when offline). The published file is a bare state dict that may
    lack the `num_batches_tracked` entries; any other mismatch is a one-line
    CheckpointError. `fast=False` keeps the published layers (no folding).
    """
    from checkpoints import load_published_weights
    path = os.fspath(path) if path is not None else default_weights_path()
    model = load_published_weights(FIDInceptionV3(), path, FID_WEIGHTS_URL, "FID InceptionV3 weights")
    model.eval()
    if fast:
        prepare_for_inference(model)
    return model.to(device)
