"""S3FD and the detection path: published layout, the reference's golden outputs, options and failures."""
import json
import os
import urllib.error

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import face_detection
from cli import UserError
from conftest import FIXTURES
from face_detection import S3FD, BatchedDetection, FaceAlignment, detect_faces
from face_detection.detect import nms
from synthetic import draw_face, recipe_model, recipe_state_dict


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("s3fd") / "s3fd_recipe.pth"
    torch.save(recipe_state_dict(S3FD()), path)  # a bare state dict, like the published s3fd.pth
    return str(path)


@pytest.fixture(scope="module")
def detector(weights):
    return FaceAlignment(face_detection.LandmarksType._2D, flip_input=False, device="cpu",
                         path_to_detector=weights)


def golden_boxes(golden):
    return [None if row[0] == -1 else tuple(int(v) for v in row) for row in golden["detect_out_boxes"]]


def test_state_dict_matches_published_layout(detector):
    with open(os.path.join(FIXTURES, "checkpoint_keys.json")) as f:
        published = json.load(f)["s3fd"]
    ours = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in detector.net.state_dict().items()]
    assert ours == published["state_dict"]
    assert sum(p.numel() for p in detector.net.parameters()) == published["parameters"] == 22_459_110


def test_raw_heads_match_golden(golden):
    net = recipe_model(S3FD())
    with torch.no_grad():
        outputs = net(torch.from_numpy(golden["s3fd_in"]))
    assert len(outputs) == 12
    for i, out in enumerate(outputs):
        expected = golden[f"s3fd_out{i}"]
        assert out.shape == expected.shape, i
        np.testing.assert_allclose(out.numpy(), expected, atol=1e-4, rtol=0)
    assert outputs[6].shape[2:] == (8, 9)  # fc7 head: fc6 is 3x3 with padding 3, no dilation


def test_detection_boxes_match_golden(golden, detector):
    frames = golden["detect_in_frames_bgr"]
    expected = golden_boxes(golden)
    assert detector.get_detections_for_batch(frames) == expected
    assert [detector.get_detections_for_batch(frames[i:i + 1])[0] for i in range(3)] == expected


def reference_loop_detection(net, frames_bgr):
    """The reference's batch_detect + nms + score filter, candidate by candidate (a test oracle)."""
    imgs = frames_bgr[..., ::-1].copy() - np.array([104, 117, 123])
    x = torch.from_numpy(imgs.transpose(0, 3, 1, 2)).float()
    with torch.no_grad():
        outputs = net(x)
    per_image = [[] for _ in frames_bgr]
    for i in range(6):
        prob = F.softmax(outputs[2 * i], dim=1)
        reg = outputs[2 * i + 1]
        stride = 2 ** (i + 2)
        for b, y, xx in zip(*np.where(prob[:, 1].numpy() > 0.05)):
            loc = reg[b, :, y, xx].contiguous()
            priors = torch.tensor([stride / 2 + xx * stride, stride / 2 + y * stride, stride * 4.0, stride * 4.0],
                                  dtype=torch.float32)
            centre = priors[:2] + loc[:2] * 0.1 * priors[2:]
            size = priors[2:] * torch.exp(loc[2:] * 0.2)
            x1y1 = centre - size / 2
            per_image[b].append(torch.cat([x1y1, size + x1y1, prob[b, 1, y, xx].view(1)]).numpy())
    kept = []
    for dets in per_image:
        dets = np.array(dets, dtype=np.float32).reshape(-1, 5)
        dets = dets[nms(dets)] if len(dets) else dets
        kept.append(dets[dets[:, 4] > 0.5])
    return kept


def test_kept_boxes_equal_the_loop_reference(detector):
    rng = np.random.RandomState(3)
    frames = np.stack([rng.randint(0, 256, (96, 128, 3)).astype(np.uint8), draw_face(96, 128, 0.5, seed=1)])
    ours = detector.detect_from_batch(frames)
    expected = reference_loop_detection(detector.net, frames)
    for mine, theirs in zip(ours, expected):
        assert mine.shape[0] > 0
        np.testing.assert_array_equal(mine, theirs)


def test_nms_counts_end_pixels_and_orders_by_score():
    dets = np.array([[0, 0, 9, 9, 0.9],  # area 100 with the +1 convention
                     [5, 0, 14, 9, 0.8],  # overlap 50 -> IoU 1/3 > 0.3: suppressed (0.286 without +1)
                     [20, 20, 30, 30, 0.95],
                     [40, 40, 45, 45, 0.9]], dtype=np.float32)  # ties box 0: the later box goes first
    assert nms(dets, 0.3).tolist() == [2, 3, 0]
    assert nms(dets, 0.34).tolist() == [2, 3, 0, 1]


def test_no_face_gives_none_and_negatives_are_clipped(detector, monkeypatch):
    frames = np.zeros((2, 64, 64, 3), np.uint8)
    faces = [np.array([[-3.7, -0.2, 40.9, 50.5, 0.9]], np.float32), np.zeros((0, 5), np.float32)]
    monkeypatch.setattr(detector, "detect_from_batch", lambda images: faces)
    assert detector.get_detections_for_batch(frames) == [(0, 0, 40, 50), None]


def test_downscaled_detection_maps_boxes_back(golden, weights):
    frames = golden["detect_in_frames_bgr"]
    large = frames.repeat(2, axis=1).repeat(2, axis=2)  # (3, 240, 320, 3): area-downscaling by 2 gives frames back
    fast = FaceAlignment(device="cpu", path_to_detector=weights, max_side=160)
    for box, expected in zip(fast.get_detections_for_batch(large), golden_boxes(golden)):
        offset = np.array(box) - 2 * np.array(expected)
        assert ((offset >= 0) & (offset <= 1)).all(), (box, expected)
    assert fast.get_detections_for_batch(frames) == golden_boxes(golden)  # small frames are not resized
    with pytest.raises(UserError, match="max_side"):
        FaceAlignment(device="cpu", path_to_detector=weights, max_side=8)


def raising(error):
    def net(x, **strips):
        raise error
    return net


def test_batch_halves_on_out_of_memory(golden, detector, monkeypatch, capsys):
    frames = list(golden["detect_in_frames_bgr"])
    real_net = detector.net
    seen = []

    def small_memory_net(x, **strips):
        seen.append(x.shape[0])
        if x.shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_net(x)

    monkeypatch.setattr(detector, "net", small_memory_net)
    batched = BatchedDetection(detector, batch_size=4)
    assert batched.detect(frames) == golden_boxes(golden)
    assert batched.batch_size == 1 and seen == [3, 2, 1, 1, 1]
    assert "batch size now 1" in capsys.readouterr().err

    monkeypatch.setattr(detector, "net", raising(RuntimeError("MPS backend out of memory")))
    with pytest.raises(UserError, match="even one frame at a time"):
        detect_faces(detector, frames, batch_size=1)
    assert "at most 256 MB per pass" in capsys.readouterr().err  # at one frame, thinner strips first
    assert detector.memory_budget == 16 << 20
    monkeypatch.setattr(detector, "memory_budget", 512 << 20)
    monkeypatch.setattr(detector, "net", raising(RuntimeError("DefaultCPUAllocator: can't allocate memory")))
    with pytest.raises(UserError, match="even one frame at a time"):
        detect_faces(detector, frames, batch_size=1)
    monkeypatch.setattr(detector, "net", raising(RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        detect_faces(detector, frames, batch_size=2)


class CountingDetector:
    """Stands in for FaceAlignment: a box for every frame whose first pixel is odd."""
    device = torch.device("cpu")

    def get_detections_for_batch(self, images):
        return [(0, 0, 4, 4) if im[0, 0, 0] % 2 else None for im in images]


def test_stream_holds_one_batch_at_a_time():
    produced = []

    def frames():
        for i in range(23):
            produced.append(i)
            yield np.full((8, 8, 3), i, np.uint8)

    batched = BatchedDetection(CountingDetector(), batch_size=5)
    results = []
    for k, (frame, box) in enumerate(batched.stream(frames())):
        assert len(produced) <= k + 5  # never more than one batch read ahead
        results.append((int(frame[0, 0, 0]), box))
    assert [i for i, _ in results] == list(range(23))
    assert [box is not None for _, box in results] == [i % 2 == 1 for i in range(23)]


def test_missing_weights_offline_is_a_clear_error(tmp_path, monkeypatch):
    def offline(url, path):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(face_detection.api, "download", offline)
    missing = tmp_path / "models" / "s3fd.pth"
    with pytest.raises(UserError) as error:
        FaceAlignment(device="cpu", path_to_detector=missing)
    message = str(error.value)
    assert str(missing) in message and face_detection.S3FD_URL in message and "put it at" in message
    assert "\n" not in message and not missing.exists()


def test_missing_weights_are_downloaded(tmp_path, monkeypatch, weights):
    def fake_download(url, path):
        assert url == face_detection.S3FD_URL
        with open(weights, "rb") as src, open(path, "wb") as dst:
            dst.write(src.read())

    monkeypatch.setattr(face_detection.api, "download", fake_download)
    target = tmp_path / "s3fd.pth"
    detector = FaceAlignment(device="cpu", path_to_detector=target)
    assert target.is_file() and isinstance(detector.net, S3FD)


def test_default_weights_location_and_bad_input(detector):
    path = face_detection.default_weights_path()
    assert path.endswith(os.path.join("face_detection", "detection", "sfd", "s3fd.pth"))
    with pytest.raises(ValueError, match="uint8"):
        detector.get_detections_for_batch(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="too small"):
        detector.get_detections_for_batch(np.zeros((1, 31, 64, 3), np.uint8))


def nhwc(frames):
    return face_detection.detect.frames_to_input(frames, "cpu")


def test_strips_give_the_whole_frame_outputs(detector):
    """Large frames go through the first blocks in strips: the heads' outputs are the same, bit for bit."""
    frames = np.stack([draw_face(211, 150, 0.4, seed=1), draw_face(211, 150, 0.2, seed=2)])
    net = detector.net
    x = nhwc(frames)
    with torch.inference_mode():
        whole = net(x)
        # 1-row pooled strips, a last strip shorter than the others, two strips; 4 blocks deep
        for rows, blocks in ((8, 3), (48, 3), (200, 3), (64, 4)):
            for a, b in zip(whole, net(x, strip_rows=rows, strip_blocks=blocks)):
                assert torch.equal(a, b), (rows, blocks)
    with pytest.raises(ValueError, match="multiples of 2 \\*\\* blocks rows; got 12 rows through 3"):
        net(x, strip_rows=12)


def test_memory_plan_bounds_the_activations():
    from face_detection.api import STRIP_BYTES, WHOLE_FRAME_BYTES, detection_plan
    from face_detection.s3fd import strip_halo
    budget = 512 << 20
    frames, strips = detection_plan(120, 160, budget)
    one = WHOLE_FRAME_BYTES * 120 * 160
    assert strips == {} and frames * one <= budget < (frames + 1) * one
    frames, strips = detection_plan(1080, 1920, budget)
    assert frames == 1 and strips == {"strip_rows": 408, "strip_blocks": 3}  # 408 + 408 + 264 rows, 48 more each
    per_pixel, per_strip_pixel = STRIP_BYTES[3]
    assert per_pixel * 1080 * 1920 + per_strip_pixel * 1920 * (408 + 2 * strip_halo(3)) <= budget
    assert detection_plan(2160, 3840, budget) == (1, {"strip_rows": 64, "strip_blocks": 4})  # over: the least, nearly
    assert [strip_halo(3), strip_halo(4)] == [24, 64]


def test_small_memory_budget_keeps_the_boxes(golden, weights):
    """One frame per pass, in strips of 32 rows: the reference's boxes all the same."""
    from face_detection.api import detection_plan
    frames = golden["detect_in_frames_bgr"]
    lean = FaceAlignment(device="cpu", path_to_detector=weights, memory_budget=7 << 20)
    assert detection_plan(*frames.shape[1:3], lean.memory_budget) == (1, {"strip_rows": 32, "strip_blocks": 3})
    assert lean.get_detections_for_batch(frames) == golden_boxes(golden)
    assert not lean.use_less_memory()  # already below the out-of-memory floor


def test_bf16_boxes_are_within_half_a_pixel_of_fp32(detector, weights):
    """Every candidate box of generated faces (scores > 0.5), bf16 against fp32: coordinates within
    0.5 px (measured: 0.18 px at most, median 0.01), scores within 0.005 (measured 0.003); the chosen
    face's rect within 1 px wherever fp32's two best scores are further apart than that."""
    from face_detection.detect import decode_heads, face_rect, select_faces
    bf16 = FaceAlignment(device="cpu", path_to_detector=weights, precision="bf16")
    frames = []
    for i in range(6):
        rng = np.random.RandomState(i)
        w = rng.randint(40, 80)
        x1, y1 = rng.randint(0, 160 - w), rng.randint(0, 120 - int(w * 1.2))
        frames.append(draw_face(120, 160, 0.3, box=(x1, y1, x1 + w, y1 + int(w * 1.2)), seed=i))
    frames = np.stack(frames)
    with torch.inference_mode():
        boxes, scores = decode_heads(detector.net(nhwc(frames)))
        boxes16, scores16 = decode_heads([o.float() for o in bf16.net(nhwc(frames).bfloat16())])
    kept = scores > 0.5
    assert kept.sum() > 100
    assert (boxes - boxes16).abs()[kept].max() < 0.5
    assert (scores - scores16).abs().max() < 0.005
    for faces, faces16 in zip(select_faces(boxes, scores), select_faces(boxes16, scores16)):
        if faces[0, 4] - faces[1, 4] > 0.01:
            assert np.abs(np.subtract(face_rect(faces[0]), face_rect(faces16[0]))).max() <= 1
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        FaceAlignment(device="cpu", path_to_detector=weights, precision="fp16")
