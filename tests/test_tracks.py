"""Face tracks of real videos (syncnet_python's run_pipeline): shot cuts, tracker, crops, audio span, end to end."""
import cv2
import numpy as np
import pytest

from evaluation.tracks import (ShotCuts, Track, TrackOptions, confident_faces, content_value,
                               crop_face, crop_windows, detect_shots_and_faces, detection_input, face_tracks,
                               greedy_tracks, make_track, scene_downscale_factor, track_audio, track_crops,
                               tracks_from_detections)
from synthetic import draw_face
from videoio import VideoWriter, jpeg_frames


def direct_content_value(a, b, step=1):
    """Mean absolute HSV difference over all pixels and the three channels, in floats."""
    ha, hb = (cv2.cvtColor(np.ascontiguousarray(f[::step, ::step]), cv2.COLOR_BGR2HSV).astype(np.float64)
              for f in (a, b))
    return float(np.mean(np.abs(ha - hb)))


def noisy(image, seed, amplitude=3):
    rng = np.random.RandomState(seed)
    noise = rng.randint(-amplitude, amplitude + 1, image.shape)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


# ---- shots ----------------------------------------------------------------------------------

def test_scene_downscale_factor_is_scenedetect_051_table():
    widths = [160, 399, 400, 640, 899, 1280, 1920, 2560, 3840]
    assert [scene_downscale_factor(w) for w in widths] == [1, 1, 2, 3, 3, 5, 6, 8, 12]


def test_content_value_equals_direct_hsv_difference_on_subsampled_frames():
    rng = np.random.RandomState(0)
    a = rng.randint(0, 256, (120, 640, 3)).astype(np.uint8)
    b = rng.randint(0, 256, (120, 640, 3)).astype(np.uint8)
    cuts = ShotCuts()
    assert cuts.add(a) is None
    value = cuts.add(b)
    assert scene_downscale_factor(640) == 3
    assert value == pytest.approx(direct_content_value(a, b, step=3), rel=1e-12)
    assert value != pytest.approx(direct_content_value(a, b, step=1), rel=1e-3)  # the pixel step is applied
    ha, hb = (cv2.cvtColor(f, cv2.COLOR_BGR2HSV) for f in (a, b))
    assert content_value(ha, hb) == pytest.approx(direct_content_value(a, b), rel=1e-12)


def test_cuts_need_threshold_and_min_scene_len_first_cut_anywhere():
    rng = np.random.RandomState(1)
    scenes = [rng.randint(0, 256, (48, 64, 3)).astype(np.uint8) for _ in range(4)]
    # scene changes at frames 3 (first cut: allowed before frame 15), 12 (only 9 after: ignored), 40
    timeline = [0] * 3 + [1] * 9 + [2] * 28 + [3] * 20
    cuts = ShotCuts()
    values = [cuts.add(noisy(scenes[s], seed=i)) for i, s in enumerate(timeline)]
    assert cuts.cuts == [3, 40]
    assert cuts.shots() == [(0, 3), (3, 40), (40, 60)]
    assert values[12] >= 30 and max(v for i, v in enumerate(values) if i not in (3, 12, 40) and v is not None) < 5
    lenient = ShotCuts(min_scene_len=5)
    for i, s in enumerate(timeline):
        lenient.add(noisy(scenes[s], seed=i))
    assert lenient.cuts == [3, 12, 40]


def write_video(path, frames, fps=25):
    height, width = frames[0].shape[:2]
    with VideoWriter(path, fps, width, height) as video:
        for frame in frames:
            video.write(frame)


def talking_frames(n, seed=0, width=320, height=240, box=(100, 50, 220, 200)):
    return [draw_face(height, width, mouth_open=0.5 + 0.4 * np.sin(i / 3), box=box, seed=seed) for i in range(n)]


def test_hard_cut_in_a_video_is_found_at_its_frame_and_none_in_a_smooth_one(tmp_path):
    smooth = talking_frames(60)
    other = [np.full((240, 320, 3), (200, 40, 160), np.uint8) for _ in range(30)]
    write_video(tmp_path / "cut.mp4", smooth[:45] + other)
    write_video(tmp_path / "smooth.mp4", smooth)
    frames = list(jpeg_frames(tmp_path / "cut.mp4", fps=25, qscale=2))
    cuts = ShotCuts()
    values = [cuts.add(f) for f in frames]
    assert len(frames) == 75 and cuts.cuts == [45] and cuts.shots() == [(0, 45), (45, 75)]
    assert values[45] == pytest.approx(direct_content_value(frames[44], frames[45]), rel=1e-12)
    assert values[45] > 30 and max(values[1:45] + values[46:]) < 5
    cuts = ShotCuts()
    for f in jpeg_frames(tmp_path / "smooth.mp4", fps=25, qscale=2):
        cuts.add(f)
    assert cuts.cuts == [] and cuts.shots() == [(0, 60)]


# ---- faces ----------------------------------------------------------------------------------

def test_confident_faces_threshold_nms_and_scale():
    faces = np.array([[10, 10, 30, 30, 0.99],
                      [12, 12, 32, 32, 0.95],  # IoU 0.68 with the first: suppressed
                      [27, 10, 47, 30, 0.97],  # IoU 3/37 = 0.081 with the first: kept
                      [60, 60, 80, 80, 0.9],  # not above 0.9
                      [90, 90, 99, 99, 0.901]], np.float32)
    out = confident_faces(faces, np.array([4.0, 2.0, 4.0, 2.0]))
    np.testing.assert_allclose(out[:, :4], [[40, 20, 120, 60], [108, 20, 188, 60], [360, 180, 396, 198]])
    np.testing.assert_allclose(out[:, 4], [0.99, 0.97, 0.901], rtol=1e-6)
    assert confident_faces(np.zeros((0, 5)), np.ones(4)).shape == (0, 5)


def test_detection_input_is_scaled_bilinear_and_channel_reversed():
    frame = np.random.RandomState(2).randint(0, 256, (240, 320, 3)).astype(np.uint8)
    small = detection_input(frame)
    expected = cv2.cvtColor(cv2.resize(frame, (80, 60), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(small, expected)


# ---- tracks ---------------------------------------------------------------------------------

def moving_box(f, x0=100.0, y0=50.0, side=120.0):
    return [x0 + f, y0, x0 + side + f, y0 + side]


def test_two_faces_one_track_each_in_order_of_first_face():
    faces = [[moving_box(f, 300) + [0.99], moving_box(f) + [0.98]] for f in range(120)]
    tracks = greedy_tracks(faces)
    assert [len(t[0]) for t in tracks] == [120, 120]
    assert tracks[0][1][7] == tuple(moving_box(7, 300)) and tracks[1][1][7] == tuple(moving_box(7))


def test_gap_of_25_frames_is_bridged_and_interpolated_26_splits():
    bridged = [[moving_box(f)] if not 60 <= f < 84 else [] for f in range(150)]  # 59 -> 84: 25 apart
    (frames, boxes), = greedy_tracks(bridged)
    track = make_track(frames, boxes)
    np.testing.assert_array_equal(track.frames, np.arange(150))
    np.testing.assert_allclose(track.boxes, [moving_box(f) for f in range(150)])  # linear motion: exact
    assert len(frames) == 126

    split = [[moving_box(f)] if not 60 <= f < 85 else [] for f in range(250)]  # 59 -> 85: 26 apart
    tracks = tracks_from_detections([(0, 250)], split)
    assert [(t.frames[0], t.frames[-1]) for t in tracks] == [(85, 249)]  # 0..59: 60 detections, dropped
    long_split = [[moving_box(f)] if not 120 <= f < 146 else [] for f in range(300)]
    assert [(t.frames[0], t.frames[-1]) for t in tracks_from_detections([(0, 300)], long_split)] == \
        [(0, 119), (146, 299)]


def test_gap_breaks_only_on_frame_distance_not_iou():
    # a face that jumps away (IoU 0) starts another track; the first one continues past it
    faces = [[moving_box(f)] if f != 110 else [moving_box(0, x0=600)] for f in range(220)]
    tracks = greedy_tracks(faces)
    assert [(t[0][0], t[0][-1], len(t[0])) for t in tracks] == [(0, 219, 219), (110, 110, 1)]


def test_short_tracks_and_small_faces_are_dropped():
    def detections(n, w, h):
        return list(range(n)), [(0.0, 0.0, w, h)] * n
    assert make_track(*detections(100, 200, 200)) is None  # needs more than min_track detections
    assert len(make_track(*detections(101, 200, 200))) == 101
    assert make_track(*detections(101, 100, 100)) is None  # mean side at most min_face_size
    assert make_track(*detections(101, 100, 101)) is not None
    assert make_track(*detections(101, 101, 50)) is not None
    assert make_track(*detections(101, 60, 60), TrackOptions(min_face_size=50)) is not None


def test_shots_shorter_than_min_track_are_skipped():
    faces = [[moving_box(0)] for _ in range(350)]
    tracks = tracks_from_detections([(0, 99), (99, 199), (199, 350)], faces)
    assert [(t.frames[0], t.frames[-1]) for t in tracks] == [(199, 349)]  # 100 frames: only 100 detections
    tracks = tracks_from_detections([(0, 99), (99, 200), (200, 350)], faces)
    assert [(t.frames[0], t.frames[-1]) for t in tracks] == [(99, 199), (200, 349)]


def test_removal_while_iterating_passes_over_the_next_face():
    a, b, c = (10.0, 10.0, 130.0, 130.0), (12.0, 10.0, 132.0, 130.0), (14.0, 10.0, 134.0, 130.0)
    faces = [[a] for _ in range(99)]
    faces[50] = [a, b, c]  # b and c overlap a (IoU > 0.5): b is passed over, c joins after a
    tracks = greedy_tracks(faces)
    assert [len(t[0]) for t in tracks] == [100, 1]
    assert tracks[0][0][50:52] == [50, 50] and tracks[0][1][50:52] == [a, c]
    assert tracks[1] == ([50], [b])
    # 100 detections, not the 101 a walk without the skip would give: in a 100-frame shot, dropped
    assert tracks_from_detections([(0, 100)], faces + [[]]) == []
    # and the first face of a track passes over the next one in its frame
    first = [[a, b, c]] + [[a]] * 5
    assert [(t[0], t[1]) for t in greedy_tracks(first)] == [([0, 0, 1, 2, 3, 4, 5], [a, c, a, a, a, a, a]),
                                                            ([0], [b])]


# ---- crops and audio ------------------------------------------------------------------------

def test_crop_geometry_and_padding_by_hand():
    rng = np.random.RandomState(3)
    frame = rng.randint(0, 100, (200, 300, 3)).astype(np.uint8)  # never the pad value 110
    track = Track(frames=np.arange(20), boxes=np.tile([20.0, 30.0, 80.0, 110.0], (20, 1)))
    sizes, cxs, cys = crop_windows(track)
    assert (sizes == 40).all() and (cxs == 50).all() and (cys == 70).all()  # constant: medfilt keeps it
    # s = 40, p = int(72.0) = 72; rows 142-40 : 142+72 = 102:214; cols 122-56 : 122+56 = 66:178 of the padded frame
    expected = np.full((112, 112, 3), 110, np.uint8)
    expected[:, 6:] = frame[30:142, 0:106]  # padded col 72 is frame col 0
    crop = crop_face(frame, 40.0, 50.0, 70.0)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    np.testing.assert_array_equal(crop, cv2.resize(expected, (224, 224)))
    assert (crop[:, :11] == 110).all() and (crop[:, 12:] != 110).all()

    corner = crop_face(frame, 40.0, 10.0, 10.0)  # rows 42:154, cols 26:138 of the padded frame
    expected = np.full((112, 112, 3), 110, np.uint8)
    expected[30:, 46:] = frame[0:82, 0:66]
    np.testing.assert_array_equal(corner, cv2.resize(expected, (224, 224)))


def test_crop_windows_median_filter_removes_spikes_and_pads_with_zeros():
    x = 100.0 + np.arange(20)
    boxes = np.stack([x - 30, np.full(20, 40.0), x + 30, np.full(20, 100.0)], axis=1)
    boxes[10] += [400, 0, 400, 0]  # one jump of the centre by 400
    sizes, cxs, cys = crop_windows(Track(frames=np.arange(20), boxes=boxes))
    assert cxs[10] == 111  # the spike is gone: the median of 104..109, 111..116 and 510
    assert cxs[0] == 100 and cxs[1] == 101 and cxs[-1] == 113  # windows at the ends hold 6, 5 ... 6 zeros
    assert (sizes == 30).all() and (cys == 70).all()


def test_track_audio_span():
    samples = np.arange(200 * 640, dtype=np.int64).astype(np.int16)
    track = Track(frames=np.arange(10, 110), boxes=np.zeros((100, 4)))
    audio = track_audio(samples, track)
    assert audio.dtype == np.int16 and len(audio) == 100 * 640
    np.testing.assert_array_equal(audio, samples[6400:70400])


# ---- end to end -----------------------------------------------------------------------------

class FakeDetector:
    """Like FaceAlignment.detect_from_batch: per image a (K, 5) float32 array, from a table by frame index."""

    def __init__(self, table):
        self.table = table
        self.images = []
        self.batches = []

    def detect_from_batch(self, images):
        images = np.asarray(images)
        out = [np.asarray(self.table(len(self.images) + i), np.float32).reshape(-1, 5) for i in range(len(images))]
        self.images.extend(images)
        self.batches.append(len(images))
        return out


def fake_faces(f):
    """Faces on the 80x60 scaled frames of the test video: a moving face in shot 1 (frames 0..139) but
    for frames 40..60; a weak and an overlapping weaker face around; a face in the short shot 2."""
    if f >= 140:
        return [[20, 10, 50, 40, 0.99]]
    if 40 <= f <= 60:
        return [[5, 5, 15, 15, 0.5]]
    main = [25 + 0.05 * f, 12, 55 + 0.05 * f, 47, 0.99]
    extra = [[main[0] + 20, 12, main[2] + 20, 47, 0.95]] if f == 5 else []  # IoU 1/5 with it: NMS 0.1 drops it
    return [main, [0, 0, 8, 8, 0.85]] + extra


def test_face_tracks_end_to_end_with_a_fake_detector(tmp_path):
    path = tmp_path / "clip.mp4"
    shot2 = [np.full((240, 320, 3), (30, 200, 60), np.uint8) for _ in range(40)]
    write_video(path, talking_frames(140) + shot2)
    detector = FakeDetector(fake_faces)
    tracks = face_tracks(path, detector, batch_size=16)
    assert detector.batches == [16] * 11 + [4]
    frames = list(jpeg_frames(path, fps=25, qscale=2))
    np.testing.assert_array_equal(detector.images[100], detection_input(frames[100]))

    assert len(tracks) == 1
    track = tracks[0]
    np.testing.assert_array_equal(track.frames, np.arange(140))  # 119 detections, 40..60 interpolated
    expected = np.array([[4 * (25 + 0.05 * f), 48, 4 * (55 + 0.05 * f), 188] for f in range(140)])
    np.testing.assert_allclose(track.boxes, expected, atol=1e-4)  # mean side 140 > 100

    crops = list(track_crops(path, track))
    assert len(crops) == 140 and all(c.shape == (224, 224, 3) and c.dtype == np.uint8 for c in crops)
    sizes, cxs, cys = crop_windows(track)
    np.testing.assert_array_equal(crops[77], crop_face(frames[77], sizes[77], cxs[77], cys[77]))

    shots, faces = detect_shots_and_faces(iter(frames), FakeDetector(fake_faces), batch_size=7)
    assert shots == [(0, 140), (140, 180)]
    assert [len(f) for f in faces[:6]] == [1, 1, 1, 1, 1, 1] and len(faces[50]) == 0 and len(faces[150]) == 1
    again, = tracks_from_detections(shots, faces)
    np.testing.assert_array_equal(again.boxes, track.boxes)


def test_video_without_faces_has_no_tracks(tmp_path):
    path = tmp_path / "empty.mp4"
    write_video(path, talking_frames(30))
    assert face_tracks(path, FakeDetector(lambda f: [])) == []
