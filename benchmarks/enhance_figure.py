"""The README's before/after crops of --enhance gfpgan: a dubbed frame, the same frame after the pass.

    python benchmarks/enhance_figure.py                    # writes benchmarks/figures/enhance_crops.png

A synthetic face, one window of speech-like audio, the recipe Wav2Lip weights and
models.gfpgan's recipe GFPGAN weights (deterministic, untrained: the published
GFPGANv1.4.pth cannot be fetched here, so the restored face is not a face; the
figure shows where the pass writes, not what it looks like with real weights).
Panels, left to right: the dubbed frame (hard paste), the square GFPGAN is given
(face_square, red), the frame after the pass, |after - before| x4, the mask.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.blend_figure import generated_face, panel_strip, write_figure  # noqa: E402
from cli import run_main  # noqa: E402

FIGURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures", "enhance_crops.png")


def figure(scale=2):
    import cv2
    import numpy as np
    import torch

    from benchmarks.bench_enhancer import recipe_gfpgan
    from blending import lower_face_mask
    from enhancer import enhance_frames, face_square
    from lipsync import paste_face
    from synthetic import draw_face
    frame = draw_face(200, 240, mouth_open=0.3, box=(64, 30, 176, 164), seed=3)
    coords = (30, 174, 64, 176)  # the face box with the default pads (0 10 0 0)
    dubbed = paste_face(frame.copy(), generated_face(frame, coords), coords)
    after, = enhance_frames([(dubbed, coords)], recipe_gfpgan(torch.device("cpu")))
    y1, y2, x1, x2 = coords
    mask = np.zeros(frame.shape[:2], np.float32)
    mask[y1:y2, x1:x2] = lower_face_mask(y2 - y1, x2 - x1)
    top, bottom, left, right = face_square(coords)
    square = dubbed.copy()
    cv2.rectangle(square, (left, top), (right - 1, bottom - 1), (0, 0, 255), 1)
    diff = np.clip(4 * np.abs(after.astype(int) - dubbed.astype(int)), 0, 255).astype(np.uint8)
    panels = {"dubbed": dubbed, "GFPGAN square": square, "--enhance": after, "|diff| x4": diff,
              "mask": cv2.cvtColor(np.rint(255 * mask).astype(np.uint8), cv2.COLOR_GRAY2BGR)}
    return panel_strip(panels, coords, scale)


def main(argv=None):
    write_figure(figure, FIGURE, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    run_main(main)
