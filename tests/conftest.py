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


def capture_frames(monkeypatch, frames):
    """Have videoio.VideoWriter also append every frame it is handed (before lossy H.264) to `frames`."""
    import videoio

    class Capturing(videoio.VideoWriter):
        def write(self, frame):
            frames.append(frame.copy())
            super().write(frame)

    monkeypatch.setattr(videoio, "VideoWriter", Capturing)
    return frames


@pytest.fixture
def captured(monkeypatch):
    """Frames handed to the encoder (before lossy H.264), recorded while the real file is written."""
    return capture_frames(monkeypatch, [])


LIVE_BOX = (20, 80, 30, 100)  # y1 y2 x1 x2 of the generated face in live_media's video


@pytest.fixture(scope="session")
def live_media(tmp_path_factory):
    """For the real-time tests: a 10-frame 128x96 face video, 1.3 s of speech (30 output frames,
    so the video loops), a recipe-weights checkpoint, an avatar prepared with --box, and an
    Engine over them (fp32, CPU)."""
    from types import SimpleNamespace
    import realtime
    from checkpoints import save_checkpoint
    from models import Wav2Lip
    from synthetic import recipe_state_dict
    root = tmp_path_factory.mktemp("live")
    video, speech, frames = write_face_media(str(root), 128, 96, [(i % 7) / 7 for i in range(10)],
                                             face_seed=0, speech_seconds=1.3, speech_seed=1)
    model = Wav2Lip()
    model.load_state_dict(recipe_state_dict(model))
    checkpoint = str(root / "wav2lip_recipe.pth")
    save_checkpoint(checkpoint, model, global_step=1)
    avatar = str(root / "avatar")
    realtime.main(["prepare", "--face", video, "--avatar", avatar, "--box", *map(str, LIVE_BOX), "--quiet"])
    args = realtime.build_parser().parse_args(["run", "--avatar", avatar, "--checkpoint_path", checkpoint,
                                               "--audio", speech])
    return SimpleNamespace(root=root, video=video, speech=speech, frames=frames, checkpoint=checkpoint,
                           avatar=avatar, engine=realtime.open_engine(args))
