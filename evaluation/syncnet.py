"""SyncNet of syncnet_python (`syncnet_v2.model`), the network behind LSE-D and LSE-C.

    net = load_syncnet("checkpoints/syncnet_v2.model", device)
    video_emb = net.forward_lip(frames)   # (N, 3, 5, 224, 224) BGR 0..255 floats -> (N, 1024)
    audio_emb = net.forward_aud(mfcc)     # (N, 1, 13, 20) MFCC windows -> (N, 1024)

Module names equal the published file's entries (`netcnnaud.0.weight`, ...),
so it loads strict. Give `forward_lip` frames in channels-last memory, as
(N, 5, 224, 224, 3).permute(0, 4, 1, 2, 3) is: oneDNN's 3-D convolutions run
about 2x faster on CPU so than on NCDHW memory, with the same numbers.
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


def load_syncnet(path=None, device="cpu"):
    """SyncNet with the weights of `path` (default checkpoints/syncnet_v2.model), in eval mode.

    The published file is a bare state dict; entries `num_batches_tracked`
    may be missing (older PyTorch). Downloaded when missing and online.
    """
    from checkpoints import load_published_weights
    path = os.fspath(path) if path is not None else default_weights_path()
    model = load_published_weights(SyncNet(), path, SYNCNET_URL, "SyncNet weights (syncnet_v2.model)")
    return model.to(device).eval()
