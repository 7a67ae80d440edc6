"""The inference building blocks against the published algorithm (benchmarks/reference_inference.py)."""
import numpy as np
import pytest
import torch

from benchmarks.reference_inference import get_smoothened_boxes, mel_chunks_of
from lipsync import (BoxSmoother, FeatureStore, GeneratorRunner, default_pass_size, face_input, high_res_chunk,
                     fold_batch_norms, mel_chunk_starts, pad_box, pass_sizes, paste_face)
from models import Wav2Lip
from synthetic import recipe_model


@pytest.mark.parametrize("mel_frames", [16, 17, 81, 250, 1137])
@pytest.mark.parametrize("fps", [25.0, 29.97, 30.0, 24.0, 60.0, 7.5])
def test_mel_chunks_match_reference(mel_frames, fps):
    mel = np.random.RandomState(0).standard_normal((80, mel_frames)).astype(np.float32)
    expected = mel_chunks_of(mel, fps)
    starts = mel_chunk_starts(mel_frames, fps)
    assert len(starts) == len(expected)
    for start, chunk in zip(starts, expected):
        np.testing.assert_array_equal(mel[:, start:start + 16], chunk)


def test_mel_chunks_need_one_window():
    with pytest.raises(ValueError, match="fewer than one 16-frame window"):
        mel_chunk_starts(15, 25.0)
    assert mel_chunk_starts(16, 25.0) == [0, 0]  # as the reference: a full window, then "the last 16"


def streamed(boxes, enabled=True):
    smoother = BoxSmoother(enabled=enabled)
    out = []
    for i, box in enumerate(boxes):
        out += smoother.push(i, box)
        assert len(smoother._pending) <= 5  # a window of 5 boxes at most
    out += smoother.finish()
    assert [item for item, _ in out] == list(range(len(boxes)))
    return np.array([box for _, box in out], dtype=np.int64).reshape(-1, 4)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 9, 13, 40])
def test_box_smoothing_equals_reference_in_place_int(n):
    rng = np.random.RandomState(n)
    boxes = np.cumsum(rng.randint(-7, 8, (n, 4)), axis=0) + 200  # jittery track, int64
    expected = get_smoothened_boxes(boxes.copy(), T=5)
    np.testing.assert_array_equal(streamed(boxes), expected)
    np.testing.assert_array_equal(streamed(boxes, enabled=False), boxes)


def test_box_smoothing_tail_sees_smoothed_entries():
    # The reference's end window reads boxes it already overwrote: a hand-checked case.
    boxes = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [9, 9, 9, 9]])
    out = streamed(boxes)
    # i=1: mean(0,0,0,0,9)=1.8 -> 1; i=2..5 use window [1, 6) that now holds smoothed values.
    assert out[:, 0].tolist() == [0, 1, 2, 2, 2, 3]  # 10/5, 12/5, 14/5, 16/5 truncated
    assert out[:, 0].tolist() == get_smoothened_boxes(boxes.copy(), 5)[:, 0].tolist()


def test_pass_sizes_never_leave_a_face_alone():
    assert pass_sizes(1, 16) == [1]
    assert pass_sizes(17, 16) == [17]
    assert pass_sizes(33, 16) == [16, 17]
    assert pass_sizes(35, 16) == [16, 16, 3]
    assert pass_sizes(5, 1) == [2, 3]
    assert all(sum(pass_sizes(n, 4)) == n and 1 not in pass_sizes(n, 4) for n in range(2, 40))


def test_a_face_alone_differs_from_batched_which_is_why_passes_avoid_it(model):
    rng = np.random.RandomState(3)
    faces = [face_input(rng.randint(0, 256, (70, 60, 3)).astype(np.uint8)) for _ in range(2)]
    mels = rng.uniform(-4, 4, (2, 80, 16)).astype(np.float32)
    batched = reference_forward(model, mels, np.stack(faces))
    runner = GeneratorRunner(model, torch.device("cpu"), "fp32")
    np.testing.assert_array_equal(runner(mels, faces), batched)
    alone = reference_forward(model, mels[:1], np.stack(faces[:1]))
    np.testing.assert_array_equal(runner(mels[:1], faces[:1]), alone)


def test_pad_box_clips_to_frame():
    assert pad_box((10, 5, 50, 90), (10, 20, 5, 5), (100, 60, 3)) == [5, 0, 55, 100]
    assert pad_box((10, 20, 30, 40), (0, 10, 0, 0), (100, 100, 3)) == [10, 20, 30, 50]


def test_face_input_and_paste():
    crop = np.random.RandomState(0).randint(0, 256, (50, 40, 3)).astype(np.uint8)
    x = face_input(crop)
    assert x.shape == (96, 96, 6) and x.dtype == np.uint8
    assert not x[48:, :, :3].any() and x[:48, :, :3].any()
    np.testing.assert_array_equal(x[:48, :, :3], x[:48, :, 3:])
    frame = np.zeros((80, 90, 3), np.uint8)
    paste_face(frame, np.full((96, 96, 3), 200, np.uint8), (10, 30, 20, 60))
    assert (frame[10:30, 20:60] == 200).all() and frame.sum() == 200 * 3 * 20 * 40


@pytest.fixture(scope="module")
def model():
    return recipe_model(Wav2Lip())


def reference_forward(model, mels, faces):
    """As the published datagen: float64 /255., FloatTensor, one forward, *255., astype(uint8)."""
    img = np.transpose(faces / 255., (0, 3, 1, 2))
    mel = np.transpose(np.reshape(mels, [len(mels), 80, 16, 1]), (0, 3, 1, 2))
    with torch.no_grad():
        pred = model(torch.FloatTensor(mel), torch.FloatTensor(img))
    return (pred.numpy().transpose(0, 2, 3, 1) * 255.).astype(np.uint8)


def test_runner_fp32_equals_reference_and_encodes_each_key_once(model):
    rng = np.random.RandomState(0)
    crops = [rng.randint(0, 256, (60 + k, 50, 3)).astype(np.uint8) for k in range(3)]
    faces = np.stack([face_input(crops[k % 3]) for k in range(7)])
    mels = rng.uniform(-4, 4, (7, 80, 16)).astype(np.float32)
    expected = reference_forward(model, mels, faces)

    runner = GeneratorRunner(model, torch.device("cpu"), "fp32", micro_batch=3)
    np.testing.assert_array_equal(runner(mels, list(faces)), expected)
    assert runner.encoded_faces == 7

    keyed = GeneratorRunner(model, torch.device("cpu"), "fp32", micro_batch=2)
    keys = [k % 3 for k in range(7)]
    inputs = [faces[i] if i < 3 else None for i in range(7)]  # later faces come from the cache
    np.testing.assert_array_equal(keyed(mels, inputs, keys), expected)
    assert keyed.encoded_faces == 3
    np.testing.assert_array_equal(keyed(mels[:2], [None, None], [0, 1]), expected[:2])
    assert keyed.encoded_faces == 3


def test_runner_bf16_is_close_and_fp16_needs_cuda(model):
    rng = np.random.RandomState(1)
    faces = np.stack([face_input(rng.randint(0, 256, (70, 70, 3)).astype(np.uint8)) for _ in range(4)])
    mels = rng.uniform(-4, 4, (4, 80, 16)).astype(np.float32)
    expected = reference_forward(model, mels, faces).astype(np.float64)
    fast = GeneratorRunner(recipe_model(Wav2Lip()), torch.device("cpu"), "bf16")(mels, list(faces))
    mse = np.mean((fast.astype(np.float64) - expected) ** 2)
    psnr = 10 * np.log10(255 ** 2 / max(mse, 1e-12))
    assert psnr > 30, psnr
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        GeneratorRunner(model, torch.device("cpu"), "fp16")


def test_fold_batch_norms_keeps_the_function():
    rng = np.random.RandomState(4)
    faces = torch.from_numpy(rng.uniform(0, 1, (3, 6, 96, 96)).astype(np.float32))
    mels = torch.from_numpy(rng.uniform(-4, 4, (3, 1, 80, 16)).astype(np.float32))
    plain = recipe_model(Wav2Lip()).eval()
    folded = fold_batch_norms(recipe_model(Wav2Lip()).eval())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules()) == 50
    with torch.no_grad():
        np.testing.assert_allclose(folded(mels, faces).numpy(), plain(mels, faces).numpy(), atol=2e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_feature_store_gives_back_the_same_bytes_and_layout(dtype):
    store = FeatureStore()
    feats = [torch.randn(2, c, s, s, dtype=dtype).contiguous(memory_format=torch.channels_last)
             for c, s in [(16, 96), (512, 3), (512, 1)]]
    store.put("a", [f[1] for f in feats])
    store.put(("b", 3), [f[0] for f in feats])
    assert "a" in store and ("b", 3) in store and "c" not in store
    for key, row in [("a", 1), (("b", 3), 0), ("a", 1)]:
        back = store.get(key, torch.device("cpu"))
        for got, f in zip(back, feats):
            assert got.shape == (1, *f.shape[1:]) and got.dtype == dtype
            assert got.is_contiguous(memory_format=torch.channels_last)
            assert torch.equal(got[0], f[row])
    store.close()
    assert "a" not in store and store.bytes == 0


def test_feature_store_stops_storing_at_its_limit():
    one_face = [torch.zeros(16, 4, 4)]  # 1 KB
    store = FeatureStore(max_bytes=2048)
    for key in range(3):
        store.put(key, one_face)
    assert 0 in store and 1 in store and 2 not in store and store.bytes == 2048


def test_cpu_passes_keep_activations_under_32_mb():
    assert default_pass_size("cpu", "fp32", 128) == 8
    assert default_pass_size("cpu", "bf16", 128) == 16
    assert default_pass_size("cuda", "fp16", 128) == 128
    assert high_res_chunk("cpu", "fp32") == 8 and high_res_chunk("cpu", "bf16") == 16
    assert high_res_chunk("cuda", "fp16") is None
    # The largest activation: 96x96 with 80 channels, in a chunk.
    assert 8 * 80 * 96 * 96 * 4 < 32 << 20 and 16 * 80 * 96 * 96 * 2 < 32 << 20


@pytest.mark.parametrize("pass_size, chunk", [(7, 2), (7, 3), (7, None), (2, 2)])
def test_chunked_high_res_layers_give_the_reference_frames(model, pass_size, chunk):
    rng = np.random.RandomState(5)
    faces = np.stack([face_input(rng.randint(0, 256, (64, 64, 3)).astype(np.uint8)) for _ in range(7)])
    mels = rng.uniform(-4, 4, (7, 80, 16)).astype(np.float32)
    runner = GeneratorRunner(model, torch.device("cpu"), "fp32", micro_batch=pass_size, chunk=chunk)
    np.testing.assert_array_equal(runner(mels, list(faces)), reference_forward(model, mels, faces))
