"""S3FD: the single-shot face detector Wav2Lip crops faces with (SPEC section 6).

Layer names equal the keys of the published `s3fd.pth`, so it loads strict.
"""
import torch
from torch import nn
from torch.nn import functional as F


class L2Norm(nn.Module):
    """Per-pixel L2 normalisation over channels with a learned per-channel scale."""

    def __init__(self, channels, scale):
        super().__init__()
        self.eps = 1e-10
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x):
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps  # (B, 1, H, W)
        return x / norm * self.weight.view(1, -1, 1, 1)


# (name, in, out) of the VGG16 trunk; a 2x2 max-pool follows the last conv of each block.
_TRUNK = [
    [("conv1_1", 3, 64), ("conv1_2", 64, 64)],
    [("conv2_1", 64, 128), ("conv2_2", 128, 128)],
    [("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256)],
    [("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512)],
    [("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512)],
]
# Feature maps the six heads read, with their channel counts; strides 4, 8, ..., 128.
HEAD_SOURCES = [("conv3_3_norm", 256), ("conv4_3_norm", 512), ("conv5_3_norm", 512),
                ("fc7", 1024), ("conv6_2", 512), ("conv7_2", 256)]


class S3FD(nn.Module):
    """forward(x (B, 3, H, W) mean-subtracted RGB) -> [cls1, reg1, ..., cls6, reg6].

    cls_i: (B, 2, H_i, W_i) background / face logits; reg_i: (B, 4, H_i, W_i) box offsets.
    """

    def __init__(self):
        super().__init__()
        for block in _TRUNK:
            for name, cin, cout in block:
                setattr(self, name, nn.Conv2d(cin, cout, 3, 1, 1))
        # The published fc6 is a plain 3x3 conv with padding 3 (no dilation): +4 pixels per side pair.
        self.fc6 = nn.Conv2d(512, 1024, 3, 1, 3)
        self.fc7 = nn.Conv2d(1024, 1024, 1, 1, 0)
        self.conv6_1 = nn.Conv2d(1024, 256, 1, 1, 0)
        self.conv6_2 = nn.Conv2d(256, 512, 3, 2, 1)
        self.conv7_1 = nn.Conv2d(512, 128, 1, 1, 0)
        self.conv7_2 = nn.Conv2d(128, 256, 3, 2, 1)
        self.conv3_3_norm = L2Norm(256, 10)
        self.conv4_3_norm = L2Norm(512, 8)
        self.conv5_3_norm = L2Norm(512, 5)
        for i, (source, channels) in enumerate(HEAD_SOURCES):
            # The first head scores 3 background classes + 1 face (max-out below).
            setattr(self, f"{source}_mbox_conf", nn.Conv2d(channels, 4 if i == 0 else 2, 3, 1, 1))
            setattr(self, f"{source}_mbox_loc", nn.Conv2d(channels, 4, 3, 1, 1))

    def forward(self, x):
        h = x
        kept = []  # conv3_3, conv4_3, conv5_3 before their pools
        for b, block in enumerate(_TRUNK):
            for name, _, _ in block:
                h = F.relu(getattr(self, name)(h))
            if b >= 2:
                kept.append(h)
            h = F.max_pool2d(h, 2, 2)
        h = F.relu(self.fc6(h))
        fc7 = F.relu(self.fc7(h))
        h = F.relu(self.conv6_1(fc7))
        conv6_2 = F.relu(self.conv6_2(h))
        h = F.relu(self.conv7_1(conv6_2))
        conv7_2 = F.relu(self.conv7_2(h))
        features = [self.conv3_3_norm(kept[0]), self.conv4_3_norm(kept[1]),
                    self.conv5_3_norm(kept[2]), fc7, conv6_2, conv7_2]

        outputs = []
        for (source, _), feature in zip(HEAD_SOURCES, features):
            cls = getattr(self, f"{source}_mbox_conf")(feature)
            reg = getattr(self, f"{source}_mbox_loc")(feature)
            if cls.shape[1] == 4:
                # Max-out background: the larger of 3 background logits against the face logit.
                background = cls[:, :3].max(dim=1, keepdim=True).values  # (B, 1, H, W)
                cls = torch.cat([background, cls[:, 3:]], dim=1)  # (B, 2, H, W)
            outputs += [cls, reg]
        return outputs
