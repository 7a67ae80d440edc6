import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
sys.path.insert(0, ROOT)


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
