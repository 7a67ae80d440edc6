import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
sys.path.insert(0, ROOT)


def write_face_media(root, width, height, openings, face_seed, speech_seconds, speech_seed):
    """A face video (one frame per mouth opening) and a speech WAV under `root`: (video, speech, frames)."""
    import videoio
    from audio import save_wav
    from synthetic import draw_face, speech_like_audio
    video, speech = os.path.join(root, "face clip.mp4"), os.path.join(root, "speech.wav")
    with videoio.VideoWriter(video, 25, width, height) as out:
        for opening in openings:
            out.write(draw_face(height, width, mouth_open=opening, seed=face_seed))
    save_wav(speech_like_audio(speech_seconds, 16000, seed=speech_seed), speech, 16000)
    return video, speech, list(videoio.VideoReader(video))


@pytest.fixture(scope="session")
def golden():
    return np.load(os.path.join(FIXTURES, "reference_outputs.npz"))


@pytest.fixture
def captured(monkeypatch):
    """Frames handed to the encoder (before lossy H.264), recorded while the real file is written."""
    import videoio
    frames = []

    class Capturing(videoio.VideoWriter):
        def write(self, frame):
            frames.append(frame.copy())
            super().write(frame)

    monkeypatch.setattr(videoio, "VideoWriter", Capturing)
    return frames
