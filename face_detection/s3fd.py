"""S3FD: the single-shot face detector Wav2Lip crops faces with (SPEC section 6).

Layer names equal the keys of the published `s3fd.pth`, so it loads strict.
Large frames can go through the first 3 or 4 blocks in horizontal strips
(`forward(x, strip_rows=..., strip_blocks=...)`): the same outputs for a fraction of the memory.
"""
import torch
from torch import nn
from torch.nn import functional as F


class L2Norm(nn.Module):
    """Per-pixel L2 normalisation over channels with a learned per-channel scale.

    Computed in float32 whatever the network's dtype (squares overflow float16).
    """

    def __init__(self, channels, scale):
        super().__init__()
        self.eps = 1e-10
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x):
        x32 = x.float()
        norm = x32.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps  # (B, 1, H, W)
        return (x32 / norm).mul_(self.weight.float().view(1, -1, 1, 1)).to(x.dtype)


# (name, in, out) of the VGG16 trunk; a 2x2 max-pool follows the last conv of each block.
_TRUNK = [
    [("conv1_1", 3, 64), ("conv1_2", 64, 64)],
    [("conv2_1", 64, 128), ("conv2_2", 128, 128)],
    [("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256)],
    [("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512)],
    [("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512)],
]
FIRST_HEAD_BLOCK = 2  # blocks 2, 3, 4 feed the first three heads (before their pools)
# Feature maps the six heads read, with their channel counts; strides 4, 8, ..., 128.
HEAD_SOURCES = [("conv3_3_norm", 256), ("conv4_3_norm", 512), ("conv5_3_norm", 512),
                ("fc7", 1024), ("conv6_2", 512), ("conv7_2", 256)]
STRIP_BLOCKS = (3, 4)  # how deep strips may go: 3 blocks hold most activations, 4 nearly all


def strip_halo(blocks):
    """Input rows a strip through the first `blocks` blocks needs beyond its own, above and below,
    so that the rows it keeps are exact: 24 for 3 blocks, 64 for 4.

    Where a strip is cut, convolutions see zero padding instead of the next rows:
    each 3x3 convolution spoils one more row at its scale, a 2x2 pool halves the
    count (rounding up). The halo covers the spoilt rows of the pooled output
    and of each head's 3x3 convolutions, rounded up to the blocks' stride.
    """
    spoilt, stride, halo = 0, 1, 0
    for b in range(blocks):
        spoilt += len(_TRUNK[b])
        if b >= FIRST_HEAD_BLOCK:
            halo = max(halo, (spoilt + 1) * stride)  # + the head's 3x3 convolution
        spoilt, stride = -(-spoilt // 2), stride * 2
    halo = max(halo, spoilt * stride)
    return -(-halo // stride) * stride


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

    def forward(self, x, strip_rows=None, strip_blocks=STRIP_BLOCKS[0]):
        """strip_rows: run the first `strip_blocks` blocks on strips of this many rows (a multiple
        of 2 ** strip_blocks) plus strip_halo(strip_blocks) rows of context each side: the same
        outputs, bit for bit when x is channels_last as frames_to_input makes it, in far less
        memory on large frames."""
        if strip_rows is None or x.shape[2] <= strip_rows:
            h, outputs = self._blocks(x, 0, strip_blocks)
        else:
            h, outputs = self._blocks_in_strips(x, strip_rows, strip_blocks)
        h, more = self._blocks(h, strip_blocks, len(_TRUNK))
        outputs += more
        h = F.relu(self.fc6(h), inplace=True)
        fc7 = F.relu(self.fc7(h), inplace=True)
        outputs += self._head(3, fc7)
        h = F.relu(self.conv6_1(fc7), inplace=True)
        conv6_2 = F.relu(self.conv6_2(h), inplace=True)
        outputs += self._head(4, conv6_2)
        h = F.relu(self.conv7_1(conv6_2), inplace=True)
        conv7_2 = F.relu(self.conv7_2(h), inplace=True)
        return outputs + self._head(5, conv7_2)

    def _blocks(self, h, first, end):
        """VGG blocks first..end-1 on h: (h after the last one's pool, [cls, reg, ...] of their heads)."""
        outputs = []
        for b in range(first, end):
            for name, _, _ in _TRUNK[b]:
                h = F.relu(getattr(self, name)(h), inplace=True)
            if b >= FIRST_HEAD_BLOCK:
                outputs += self._head(b - FIRST_HEAD_BLOCK, h)
            h = F.max_pool2d(h, 2, 2)
        return h, outputs

    def _head(self, i, feature):
        source, _ = HEAD_SOURCES[i]
        if source.endswith("_norm"):
            feature = getattr(self, source)(feature)
        cls = getattr(self, f"{source}_mbox_conf")(feature)
        reg = getattr(self, f"{source}_mbox_loc")(feature)
        if cls.shape[1] == 4:
            # Max-out background: the larger of 3 background logits against the face logit.
            background = cls[:, :3].max(dim=1, keepdim=True).values  # (B, 1, H, W)
            cls = torch.cat([background, cls[:, 3:]], dim=1)  # (B, 2, H, W)
        return [cls, reg]

    def _blocks_in_strips(self, x, rows, blocks):
        """_blocks(x, 0, blocks), strip by strip, each strip's own rows written into the outputs."""
        if blocks not in STRIP_BLOCKS or rows % 2 ** blocks:
            raise ValueError(f"strips go through {STRIP_BLOCKS} blocks, on multiples of 2 ** blocks "
                             f"rows; got {rows} rows through {blocks}")
        height, halo = x.shape[2], strip_halo(blocks)
        strides = [2 ** blocks] + [2 ** b for b in range(FIRST_HEAD_BLOCK, blocks) for _ in "cr"]
        results = None  # the pooled output, then each head's cls and reg, of the whole frame
        for top in range(0, height, rows):
            bottom = min(top + rows, height)
            start = max(0, top - halo)
            h, outputs = self._blocks(x[:, :, start:min(height, bottom + halo)], 0, blocks)
            if results is None:
                # channels_last, as the whole frame's would be (frames_to_input's layout), so
                # that the next blocks run the same kernels.
                results = [t.new_empty((*t.shape[:2], height // s, t.shape[3])).contiguous(
                    memory_format=torch.channels_last) for t, s in zip([h, *outputs], strides)]
            for t, s, result in zip([h, *outputs], strides, results):
                first = (top - start) // s
                n = result.shape[2] - top // s if bottom == height else (bottom - top) // s
                result[:, :, top // s:top // s + n] = t[:, :, first:first + n]
        return results[0], results[1:]
