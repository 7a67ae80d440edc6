"""inference.py with a 288 generator (HD.md): nothing to set, the checkpoint carries its size; the
published algorithm at the larger crop, streamed, with the memory chunks re-sized for 288."""
import numpy as np
import pytest
import torch

import inference
import videoio
from benchmarks import reference_inference
from conftest import write_face_media
from checkpoints import CheckpointError, save_checkpoint
from lipsync import FeatureStore, GeneratorRunner, default_pass_size, face_input, high_res_chunk, load_generator
from models import Wav2Lip

W, H, N_FRAMES = 160, 120, 4
AUDIO_SECONDS = 0.5  # 41 mel frames -> 10 output frames at 25 fps: the 4-frame video loops
N_OUT = 10
BOX = (20, 110, 40, 130)  # y1 y2 x1 x2


@pytest.fixture(scope="module")
def hd(tmp_path_factory):
    root = tmp_path_factory.mktemp("hd")
    video, speech, frames = write_face_media(str(root), W, H, [i / N_FRAMES for i in range(N_FRAMES)],
                                             face_seed=2, speech_seconds=AUDIO_SECONDS, speech_seed=3)
    torch.manual_seed(0)
    checkpoint = str(root / "wav2lip_288.pth")
    save_checkpoint(checkpoint, Wav2Lip(288), global_step=1)  # random weights, img_size recorded
    return checkpoint, video, speech, frames


def test_chunks_and_passes_are_sized_by_bytes():
    """96 keeps its chunks (8 faces fp32, 16 in 16-bit); at 288 a face's last decoder activation
    takes 26.5 MB in fp32, so chunks and passes are the smallest allowed, 2 faces."""
    assert high_res_chunk("cpu", "fp32", 96) == 8 and high_res_chunk("cpu", "bf16", 96) == 16
    assert high_res_chunk("cpu", "fp32", 288) == 2 and high_res_chunk("cpu", "bf16", 288) == 2
    assert default_pass_size("cpu", "fp32", 128, 288) == 2 and default_pass_size("cuda", "fp32", 128, 288) == 128
    assert high_res_chunk("cuda", "bf16", 288) is None
    assert face_input(np.zeros((50, 40, 3), np.uint8), 288).shape == (288, 288, 6)


def test_inference_at_288_equals_the_reference_algorithm(hd, tmp_path, captured):
    checkpoint, video, speech, source = hd
    stats = inference.main(["--checkpoint_path", checkpoint, "--face", video, "--audio", speech,
                            "--outfile", str(tmp_path / "out.mp4"), "--box", *map(str, BOX), "--quiet"])
    assert stats["frames"] == N_OUT and stats["encoded_faces"] == N_FRAMES  # looped frames: stored features
    with videoio.VideoReader(str(tmp_path / "out.mp4")) as out:
        assert (out.width, out.height) == (W, H) and sum(1 for _ in out) == N_OUT
    expected, _ = reference_inference.reference_frames(checkpoint, video, speech, box=BOX)
    assert len(captured) == len(expected) == N_OUT
    y1, y2, x1, x2 = BOX
    for i, (frame, reference) in enumerate(zip(captured, expected)):
        # Passes and chunks of 2 against the reference's one batch of 10: the same frames, bit for bit.
        assert np.array_equal(frame, reference), (i, np.abs(frame.astype(int) - reference).max())
        changed = np.any(frame != source[i % N_FRAMES], axis=2)
        assert changed[y1:y2, x1:x2].any(), i
        changed[y1:y2, x1:x2] = False
        assert not changed.any(), f"frame {i} changed outside the box"


def test_features_of_288_faces_are_stored_and_read_back(hd):
    checkpoint = hd[0]
    model = load_generator(checkpoint, torch.device("cpu"))
    assert model.img_size == 288 and not next(model.parameters()).is_meta
    rng = np.random.RandomState(0)
    face = torch.from_numpy(rng.rand(1, 6, 288, 288).astype(np.float32))
    with torch.inference_mode():
        features = model.encode_face(face)
    store = FeatureStore()
    store.put("k", [f[0] for f in features])  # (C, H, W) each, as the runner stores them
    assert len(features) == 9 and store.bytes == 9_278_464  # 9.3 MB a face (1.2 MB at 96)
    for stored, original in zip(store.get("k", torch.device("cpu")), features):
        assert torch.equal(stored, original)
    store.close()


def test_a_288_checkpoint_where_96_is_required_is_one_line(hd):
    from checkpoints import load_sized_model
    with pytest.raises(CheckpointError, match=r"a 288x288 Wav2Lip checkpoint \(img_size 288\), but a 96x96 one"):
        load_sized_model(Wav2Lip, hd[0], img_size=96, assign=True)


def test_runner_takes_the_models_size(hd):
    runner = GeneratorRunner(load_generator(hd[0], torch.device("cpu")), torch.device("cpu"), "fp32")
    assert (runner.img_size, runner.micro_batch, runner.chunk) == (288, 2, 2)
