"""The detection path of the reference (SPEC section 6), vectorised.

Frames in, boxes out: `frames_to_input` -> S3FD -> `decode_heads` -> `select_faces`.
The reference decodes every anchor whose face probability exceeds 0.05 in a
Python loop, runs NMS, then keeps scores > 0.5. Boxes scoring 0.5 or less can
neither survive nor suppress a survivor (NMS visits boxes by descending score),
so here they are dropped before NMS: same result, a fraction of the work.
"""
import numpy as np
import torch
from torch.nn import functional as F

# Per-channel mean the reference subtracts *after* flipping BGR to RGB (a quirk kept on purpose).
MEAN = (104.0, 117.0, 123.0)
FACE_SCORE = 0.5  # keep boxes scoring above this
NMS_IOU = 0.3  # suppress boxes overlapping a better one by more than this
VARIANCES = (0.1, 0.2)  # SSD box-offset scales: centre, size
MIN_SIDE = 2 ** 5  # five 2x2 max-pools: smaller frames leave the deepest layers empty


def frames_to_input(frames_bgr, device, dtype=torch.float32):
    """(N, H, W, 3) BGR uint8 frames -> (N, 3, H, W) network input on `device`, channels_last in memory.

    The values (integers in [-123, 151]) are exact in float32, bfloat16 and float16.
    """
    frames = torch.from_numpy(np.ascontiguousarray(frames_bgr)).to(device)
    rgb = frames.flip(-1).float()  # (N, H, W, 3)
    x = rgb - torch.tensor(MEAN, device=device)
    return x.permute(0, 3, 1, 2).to(dtype)  # (N, 3, H, W)


def decode_heads(outputs):
    """Boxes and face scores of every anchor of the six heads.

    outputs: [cls1, reg1, ..., cls6, reg6] of S3FD. Returns boxes (N, A, 4) as
    float32 (x1, y1, x2, y2) and scores (N, A), anchors in (head, y, x) order.
    Same float32 operations, in the same order, as the reference `batch_decode`.
    """
    all_boxes, all_scores = [], []
    for i in range(len(outputs) // 2):
        cls, reg = outputs[2 * i], outputs[2 * i + 1]
        stride = 2 ** (i + 2)  # 4, 8, ..., 128
        anchor = float(4 * stride)
        n, _, h, w = reg.shape
        scores = F.softmax(cls, dim=1)[:, 1]  # (N, H, W)
        ys, xs = torch.meshgrid(torch.arange(h, device=reg.device), torch.arange(w, device=reg.device),
                                indexing="ij")
        centres = torch.stack([stride / 2 + xs * stride, stride / 2 + ys * stride], dim=-1).float()  # (H, W, 2)
        loc = reg.permute(0, 2, 3, 1)  # (N, H, W, 4)
        centre = centres + loc[..., :2] * VARIANCES[0] * anchor
        size = anchor * torch.exp(loc[..., 2:] * VARIANCES[1])
        top_left = centre - size / 2
        bottom_right = size + top_left
        all_boxes.append(torch.cat([top_left, bottom_right], dim=-1).reshape(n, h * w, 4))
        all_scores.append(scores.reshape(n, h * w))
    return torch.cat(all_boxes, dim=1), torch.cat(all_scores, dim=1)


def nms(dets, threshold=NMS_IOU, pixel=1):
    """Indices of `dets` (K, 5) [x1, y1, x2, y2, score] kept by greedy NMS, best first.

    The reference's conventions: widths and heights count both end pixels
    (`pixel=1`; syncnet_python's tracker uses 0); a box is dropped when its IoU
    with a kept box exceeds `threshold`. Equal scores go to the later box first
    (reversed stable sort), so results do not depend on the sort algorithm. The
    loop runs once per *kept* box.
    """
    x1, y1, x2, y2, scores = dets.T
    areas = (x2 - x1 + pixel) * (y2 - y1 + pixel)
    order = np.argsort(scores, kind="stable")[::-1]
    keep = []
    while order.size > 0:
        best, rest = order[0], order[1:]
        keep.append(best)
        w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + pixel)
        h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + pixel)
        overlap = w * h
        iou = overlap / (areas[best] + areas[rest] - overlap)
        order = rest[iou <= threshold]
    return np.asarray(keep, dtype=np.int64)


def select_faces(boxes, scores):
    """Per image, the NMS-kept boxes scoring above FACE_SCORE: a list of (K_i, 5) float32 arrays, best first."""
    image, anchor = torch.nonzero(scores > FACE_SCORE, as_tuple=True)  # sorted by image, then anchor
    dets = torch.cat([boxes[image, anchor], scores[image, anchor, None]], dim=1).cpu().numpy()  # (K, 5)
    counts = torch.bincount(image, minlength=scores.shape[0]).cpu().numpy()
    per_image = np.split(dets, np.cumsum(counts)[:-1])
    return [d[nms(d)] for d in per_image]


def face_rect(face):
    """A kept face [x1, y1, x2, y2, score] as the reference returns it: ints (x1, y1, x2, y2),
    negatives clipped to 0 (then truncated)."""
    x1, y1, x2, y2 = (int(v) for v in np.clip(face[:4], 0, None))
    return x1, y1, x2, y2
