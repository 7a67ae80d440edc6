"""Deterministic weights and synthetic media, for tests, benchmarks and demos.

No published weights or LRS2 clips can be shipped with the code, so tests build
their own: `recipe_state_dict` is the deterministic weight recipe under which
the golden outputs of the reference code were computed (tests/fixtures), and
the media helpers draw face-like frames and speech-like audio.
"""
import numpy as np
import torch


def recipe_state_dict(model, evaluation=False):
    """The deterministic "recipe" weights for `model` (GOLDEN.md).

    Entries are visited in sorted-name order; entry k draws from
    RandomState(1000 + k). `evaluation=True` is EVALUATION.md's variant for the
    scoring networks: every weight of two or more dimensions (Conv2d, Conv3d,
    Linear) is scaled like a 4-D one.
    """
    state = model.state_dict()
    names = sorted(state)
    out = {}
    for k, name in enumerate(names):
        shape = tuple(state[name].shape)
        if name.endswith("num_batches_tracked"):
            out[name] = torch.zeros((), dtype=torch.int64)
            continue
        z = np.random.RandomState(1000 + k).standard_normal(shape)
        module = name.rsplit(".", 1)[0]
        if name.endswith("running_var"):
            value = 1 + 0.2 * np.abs(z)
        elif name.endswith("running_mean"):
            value = 0.1 * z
        elif len(shape) == 4 or (evaluation and len(shape) >= 2):
            value = z / np.sqrt(np.prod(shape[1:]))
        elif name.endswith(".weight") and len(shape) == 1 and (
                f"{module}.running_var" in state or module.endswith("_norm")):
            value = 1 + 0.1 * z
        else:
            value = 0.05 * z
        out[name] = torch.from_numpy(np.asarray(value, dtype=np.float32))
    return out


def recipe_model(model, evaluation=False):
    """`model` with the recipe weights loaded strict, in eval mode."""
    model.load_state_dict(recipe_state_dict(model, evaluation), strict=True)
    return model.eval()


def speech_like_audio(seconds, sr=16000, seed=0):
    """Voiced, syllable-rate amplitude-modulated audio in [-1, 1] (float32).

    A harmonic tone with a wandering pitch, noise, and a 3-6 Hz on/off
    envelope: enough structure for the mel and sync pipelines to be exercised.
    """
    rng = np.random.RandomState(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    voice = sum(np.sin(h * phase) / h for h in range(1, 8))
    voice = voice + 0.1 * rng.standard_normal(n)
    envelope = loudness_envelope(n, sr, rng)
    wav = voice * envelope
    return (0.9 * wav / max(1e-8, np.abs(wav).max())).astype(np.float32)


def loudness_envelope(n, sr, rng):
    """Smooth syllable-like envelope in [0, 1]: random 80-250 ms bursts and pauses."""
    env = np.zeros(n)
    i = 0
    while i < n:
        length = int(sr * rng.uniform(0.08, 0.25))
        level = rng.uniform(0.3, 1.0) if rng.rand() < 0.7 else 0.0
        env[i:i + length] = level
        i += length
    width = int(sr * 0.03)
    kernel = np.hanning(2 * width + 1)
    return np.convolve(env, kernel / kernel.sum(), mode="same")


def draw_face(height, width, mouth_open=0.3, box=None, seed=0):
    """A BGR uint8 frame with a cartoon face; `mouth_open` in [0, 1] sets the lips' gap.

    `box` = (x1, y1, x2, y2) of the face, by default centred covering ~half the frame.
    """
    rng = np.random.RandomState(seed)
    frame = np.full((height, width, 3), 0, np.uint8)
    frame[:] = (rng.randint(40, 90), rng.randint(60, 110), rng.randint(80, 130))
    if box is None:
        fw, fh = width // 2, int(height * 0.6)
        x1, y1 = (width - fw) // 2, (height - fh) // 2
        box = (x1, y1, x1 + fw, y1 + fh)
    return paint_face(frame, box, mouth_open)


def paint_face(frame, box, mouth_open=0.3):
    """Draw draw_face's cartoon face filling `box` (x1, y1, x2, y2) onto a BGR uint8 frame, in place."""
    import cv2
    x1, y1, x2, y2 = box
    cx, cy, fw, fh = (x1 + x2) // 2, (y1 + y2) // 2, x2 - x1, y2 - y1
    cv2.ellipse(frame, (cx, cy), (fw // 2, fh // 2), 0, 0, 360, (120, 160, 220), -1)
    for ex in (cx - fw // 5, cx + fw // 5):
        cv2.circle(frame, (ex, cy - fh // 8), max(2, fw // 14), (60, 40, 30), -1)
    mouth_w = max(3, fw // 4)
    mouth_h = max(1, int(round(fh * 0.12 * float(np.clip(mouth_open, 0, 1)))))
    cv2.ellipse(frame, (cx, cy + fh // 4), (mouth_w, mouth_h), 0, 0, 360, (40, 30, 150), -1)
    return frame


def mouth_openings(wav, sr, fps, n_frames):
    """Per video frame, the loudness (RMS) of the audio during that frame, scaled to [0, 1]."""
    per_frame = sr / fps
    rms = np.array([np.sqrt(np.mean(np.square(wav[int(f * per_frame):int((f + 1) * per_frame)]) + 1e-12))
                    for f in range(n_frames)])
    return np.clip(rms / (0.8 * max(1e-8, rms.max())), 0, 1)


def talking_face_clip(seconds, size=96, fps=25, sr=16000, seed=0):
    """(wav float32, list of BGR uint8 (size, size, 3) face crops) whose mouth follows the loudness.

    Face position, background and skin tint vary with `seed`; a little noise per frame.
    """
    rng = np.random.RandomState(seed)
    wav = speech_like_audio(seconds, sr, seed)
    n_frames = int(seconds * fps)
    margin = size // 12
    box = (rng.randint(0, margin), rng.randint(0, margin),
           size - rng.randint(0, margin), size - rng.randint(0, margin))
    tint = rng.randint(-25, 26, size=3)
    frames = []
    for f, opening in enumerate(mouth_openings(wav, sr, fps, n_frames)):
        frame = draw_face(size, size, opening, box, seed).astype(np.int16) + tint
        frame = frame + rng.normal(0, 2, frame.shape).round().astype(np.int16)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return wav, frames


def write_talking_video(path, seconds=1.0, width=160, height=120, fps=25, sr=16000, seed=0):
    """Write an LRS2-style clip (H.264 video + AAC audio) of a face whose mouth follows speech-like audio.

    Returns the number of frames written.
    """
    import os
    import tempfile

    from audio import save_wav
    from videoio import VideoWriter
    wav = speech_like_audio(seconds, sr, seed)
    n_frames = int(round(seconds * fps))
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = os.path.join(tmp, "audio.wav")
        save_wav(wav, wav_path, sr)
        with VideoWriter(path, fps, width, height, audio_path=wav_path) as video:
            for opening in mouth_openings(wav, sr, fps, n_frames):
                video.write(draw_face(height, width, opening, seed=seed))
    return n_frames
