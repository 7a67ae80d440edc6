"""SyncNet of syncnet_python (`syncnet_v2.model`), the network behind LSE-D and LSE-C.

    net = load_syncnet("checkpoints/syncnet_v2.model", device)
    video_emb = net.forward_lip(frames)   # (N, 3, 5, 224, 224) BGR 0..255 floats -> (N, 1024)
    audio_emb = net.forward_aud(mfcc)     # (N, 1, 13, 20) MFCC windows -> (N, 1024)

Module names equal the published file's entries (`netcnnaud.0.weight`, ...),
so it loads strict. `LipEncoder` is the same lip branch computed with 2-D
convolutions and folded batch norms: about 2x faster on CPU, equal to within
float rounding (the last layers of the 3-D branch see one frame, so they are
2-D convolutions already; the first one sees five, stacked as 15 channels).
"""
import os

import torch
from torch import nn

SYNCNET_URL = "https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model"
EMBEDDING_SIZE = 1024
WINDOW_FRAMES = 5  # video frames per embedding (0.2 s at 25 fps)
MFCC_PER_FRAME = 4  # 100 MFCC frames per second / 25 video frames per second
MFCC_WINDOW = WINDOW_FRAMES * MFCC_PER_FRAME  # 20 MFCC frames per embedding
FACE_SIZE = 224


def default_weights_path():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(root, "checkpoints", "syncnet_v2.model")


def _conv_bn_relu(conv, channels, batch_norm):
    return [conv, batch_norm(channels), nn.ReLU(inplace=True)]


def _fc(size):
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                         nn.Linear(512, size))


class SyncNet(nn.Module):
    """syncnet_python's `S`: an audio branch on MFCC windows, a lip branch on 5-frame clips."""

    def __init__(self, embedding_size=EMBEDDING_SIZE):
        super().__init__()
        bn2, bn3 = nn.BatchNorm2d, nn.BatchNorm3d
        self.netcnnaud = nn.Sequential(  # (N, 1, 13, 20)
            *_conv_bn_relu(nn.Conv2d(1, 64, 3, padding=1), 64, bn2),
            nn.MaxPool2d(1, stride=1),
            *_conv_bn_relu(nn.Conv2d(64, 192, 3, padding=1), 192, bn2),
            nn.MaxPool2d(3, stride=(1, 2)),  # (N, 192, 11, 9)
            *_conv_bn_relu(nn.Conv2d(192, 384, 3, padding=1), 384, bn2),
            *_conv_bn_relu(nn.Conv2d(384, 256, 3, padding=1), 256, bn2),
            *_conv_bn_relu(nn.Conv2d(256, 256, 3, padding=1), 256, bn2),
            nn.MaxPool2d(3, stride=2),  # (N, 256, 5, 4)
            *_conv_bn_relu(nn.Conv2d(256, 512, (5, 4)), 512, bn2),  # (N, 512, 1, 1)
        )
        self.netfcaud = _fc(embedding_size)
        self.netcnnlip = nn.Sequential(  # (N, 3, 5, 224, 224)
            *_conv_bn_relu(nn.Conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2)), 96, bn3),  # (N, 96, 1, 109, 109)
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),  # (N, 96, 1, 54, 54)
            *_conv_bn_relu(nn.Conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), 256, bn3),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),  # (N, 256, 1, 13, 13)
            *_conv_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, bn3),
            *_conv_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, bn3),
            *_conv_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, bn3),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),  # (N, 256, 1, 6, 6)
            *_conv_bn_relu(nn.Conv3d(256, 512, (1, 6, 6)), 512, bn3),  # (N, 512, 1, 1, 1)
        )
        self.netfclip = _fc(embedding_size)

    def forward_aud(self, x):
        return self.netfcaud(self.netcnnaud(x).flatten(1))  # (N, 512) -> (N, 1024)

    def forward_lip(self, x):
        return self.netfclip(self.netcnnlip(x).flatten(1))  # (N, 512) -> (N, 1024)


def _folded_2d(conv3d, batch_norm, frames=1):
    """A Conv2d equal to conv3d (over `frames` stacked frames) followed by batch_norm in eval mode."""
    weight = conv3d.weight.detach()  # (out, in, T, kh, kw)
    out_channels, in_channels, depth = weight.shape[:3]
    assert depth == frames and conv3d.padding[0] == 0 and conv3d.stride[0] == 1
    scale = batch_norm.weight.detach() / torch.sqrt(batch_norm.running_var + batch_norm.eps)
    conv = nn.Conv2d(in_channels * depth, out_channels, weight.shape[3:], stride=conv3d.stride[1:],
                     padding=conv3d.padding[1:])
    with torch.no_grad():
        # Channel c of frame t becomes input channel c * T + t, as (N, C, T, H, W).reshape(N, C*T, H, W).
        conv.weight.copy_(weight.reshape(out_channels, in_channels * depth, *weight.shape[3:])
                          * scale[:, None, None, None])
        conv.bias.copy_((conv3d.bias.detach() - batch_norm.running_mean) * scale + batch_norm.bias.detach())
    return conv


class LipEncoder(nn.Module):
    """SyncNet's lip branch (eval mode) as 2-D convolutions with batch norms folded in.

    Input: (N, 15, 224, 224) = 5 BGR frames as (N, 3, 5, 224, 224).reshape(N, 15, 224, 224).
    """

    def __init__(self, syncnet):
        super().__init__()
        c = syncnet.netcnnlip
        pool = nn.MaxPool2d(3, stride=2)
        self.features = nn.Sequential(
            _folded_2d(c[0], c[1], WINDOW_FRAMES), nn.ReLU(inplace=True), pool,
            _folded_2d(c[4], c[5]), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1),
            _folded_2d(c[8], c[9]), nn.ReLU(inplace=True),
            _folded_2d(c[11], c[12]), nn.ReLU(inplace=True),
            _folded_2d(c[14], c[15]), nn.ReLU(inplace=True), pool,
            _folded_2d(c[18], c[19]), nn.ReLU(inplace=True),
        )
        self.fc = syncnet.netfclip

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


def load_syncnet(path=None, device="cpu"):
    """SyncNet with the weights of `path` (default checkpoints/syncnet_v2.model), in eval mode.

    The published file is a bare state dict; entries `num_batches_tracked`
    may be missing (older PyTorch). Downloaded when missing and online.
    """
    from checkpoints import load_published_weights
    path = os.fspath(path) if path is not None else default_weights_path()
    model = load_published_weights(SyncNet(), path, SYNCNET_URL, "SyncNet weights (syncnet_v2.model)")
    return model.to(device).eval()
