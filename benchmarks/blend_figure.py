"""The README's before/after crops of --blend: one generated face pasted hard (the reference) and blended.

    python benchmarks/blend_figure.py                      # writes benchmarks/figures/blend_crops.png

A synthetic face, one window of speech-like audio and the recipe generator weights
(deterministic, untrained: the generated face is noise-like, which shows plainly
where each paste writes). Panels, left to right: the frame, the reference's hard
paste of the whole box, --blend, and the mask's weights (white = generated face).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cli import run_main  # noqa: E402

FIGURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures", "blend_crops.png")


def generated_face(frame, coords):
    """The recipe generator's face for `frame`'s box (y1, y2, x1, x2) and a window of speech."""
    import torch

    import audio
    from hparams import SYNCNET_MEL_STEP_SIZE, hparams
    from lipsync import GeneratorRunner, face_input
    from models import Wav2Lip
    from synthetic import recipe_model, speech_like_audio
    y1, y2, x1, x2 = coords
    mel = audio.melspectrogram(speech_like_audio(0.5, hparams.sample_rate, seed=1))
    runner = GeneratorRunner(recipe_model(Wav2Lip()), torch.device("cpu"))
    return runner(mel[None, :, 10:10 + SYNCNET_MEL_STEP_SIZE], [face_input(frame[y1:y2, x1:x2])])[0]


def figure(scale=2, margin=16):
    import cv2
    import numpy as np

    from blending import blend_face, lower_face_mask
    from lipsync import paste_face
    from synthetic import draw_face
    frame = draw_face(200, 240, mouth_open=0.3, box=(64, 30, 176, 164), seed=3)
    coords = (30, 174, 64, 176)  # the face box with the default pads (0 10 0 0)
    face = generated_face(frame, coords)
    y1, y2, x1, x2 = coords
    mask = np.zeros(frame.shape[:2], np.float32)
    mask[y1:y2, x1:x2] = lower_face_mask(y2 - y1, x2 - x1)
    panels = {"frame": frame, "hard paste": paste_face(frame.copy(), face, coords),
              "--blend": blend_face(frame.copy(), face, coords),
              "mask": cv2.cvtColor(np.rint(255 * mask).astype(np.uint8), cv2.COLOR_GRAY2BGR)}
    return panel_strip(panels, coords, scale,
                       window=(max(0, y1 - margin), y2 + margin, max(0, x1 - margin), x2 + margin))


def panel_strip(panels, coords, scale, window=None):
    """{title: BGR image} side by side, each cut to `window` (y1, y2, x1, x2; default whole),
    enlarged `scale` times, titled, with the face box `coords` (y1, y2, x1, x2) outlined."""
    import cv2
    import numpy as np
    top, bottom, left, right = window or (0, None, 0, None)
    y1, y2, x1, x2 = coords
    crops = []
    for name, image in panels.items():
        crop = cv2.resize(image[top:bottom, left:right], None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        crop = cv2.copyMakeBorder(crop, 28, 4, 4, 4, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        cv2.putText(crop, name, (8, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.rectangle(crop, (4 + scale * (x1 - left), 28 + scale * (y1 - top)),
                      (4 + scale * (x2 - left) - 1, 28 + scale * (y2 - top) - 1), (0, 200, 0), 1)  # the face box
        crops.append(crop)
    return np.concatenate(crops, axis=1)


def write_figure(make_figure, default_path, description, argv=None):
    """The figure scripts' CLI: --out PNG (default `default_path`)."""
    import cv2
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=default_path, help="PNG to write")
    args = parser.parse_args(argv)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    if not cv2.imwrite(args.out, make_figure()):
        raise OSError(f"{args.out}: could not write the PNG")
    print(f"wrote {args.out}")


def main(argv=None):
    write_figure(figure, FIGURE, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    run_main(main)
