"""The evaluation scripts end to end on generated media: dubbing test pairs (LRS2 style and ReSyncED)
with the published algorithm's frames, and scoring real videos per face track."""
import os

import numpy as np
import pytest
import torch

import streaming
import videoio
from audio import save_wav
from benchmarks import reference_inference
from checkpoints import save_checkpoint
from evaluation import gen_videos_from_filelist, generate, lse, real_videos_inference
from evaluation.scores_LSE import calculate_scores_real_videos
from evaluation.syncnet import SyncNet
from face_detection import FaceAlignment
from models import Wav2Lip
from synthetic import draw_face, recipe_state_dict, speech_like_audio, write_talking_video

W, H = 128, 96
BOX = (15, 30, 96, 70)  # x1 y1 x2 y2, as the detector returns it


class FixedDetector:
    """One face at the same place in every frame (so smoothing cannot change it)."""

    device = torch.device("cpu")

    def __init__(self, box=BOX):
        self.box = box

    def detect_from_batch(self, frames):
        return [np.array([[*self.box, 0.99]], np.float32) for _ in frames]

    get_detections_for_batch = FaceAlignment.get_detections_for_batch  # the published algorithm's call


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lrs2")
    (root / "main" / "6330311066473698535").mkdir(parents=True)
    clip = str(root / "main" / "6330311066473698535" / "00011.mp4")
    write_talking_video(clip, seconds=0.8, width=W, height=H, seed=3)  # 20 frames
    speech = str(root / "speech.wav")
    save_wav(speech_like_audio(0.6, 16000, seed=1), speech, 16000)
    with videoio.VideoWriter(str(root / "main" / "voice.mp4"), 25, 64, 64, audio_path=speech) as out:
        for _ in range(15):
            out.write(np.zeros((64, 64, 3), np.uint8))
    long_speech = str(root / "long.wav")
    save_wav(speech_like_audio(1.6, 16000, seed=2), long_speech, 16000)
    with videoio.VideoWriter(str(root / "main" / "long.mp4"), 25, 64, 64, audio_path=long_speech) as out:
        for _ in range(40):
            out.write(np.zeros((64, 64, 3), np.uint8))
    model = Wav2Lip()
    model.load_state_dict(recipe_state_dict(model))
    checkpoint = str(root / "wav2lip.pth")
    save_checkpoint(checkpoint, model)
    filelist = root / "test.txt"
    filelist.write_text("voice 6330311066473698535/00011\n"
                        "long 6330311066473698535/00011\n"
                        "voice missing/clip\n")
    return root, clip, speech, checkpoint, filelist


def test_gen_videos_equal_the_published_algorithm_and_skip_bad_pairs(pairs, tmp_path, monkeypatch, captured,
                                                                     capsys):
    root, clip, speech, checkpoint, filelist = pairs
    monkeypatch.setattr(streaming, "load_face_detector", lambda device: FixedDetector())
    results = tmp_path / "results"
    status = gen_videos_from_filelist.main(["--filelist", str(filelist), "--data_root", str(root / "main"),
                                            "--results_dir", str(results), "--checkpoint_path", checkpoint,
                                            "--quiet"])
    assert status == 1
    assert sorted(os.listdir(results)) == ["0.mp4"]  # nothing left behind by the failed pairs
    err = capsys.readouterr().err
    assert "the video has 20 frames, fewer than the" in err  # line 1: 1.6 s of audio, not looped
    assert f"{root / 'main' / 'missing' / 'clip.mp4'}: file not found" in err
    # The published inference on the same audio makes one frame more: the window on the last 16 mels.
    voice = str(tmp_path / "voice.wav")
    videoio.extract_audio(str(root / "main" / "voice.mp4"), voice)
    expected, fps = reference_inference.reference_frames(checkpoint, clip, voice, detector=FixedDetector(),
                                                         pads=(0, 0, 0, 0))
    assert fps == 25 and len(captured) == len(expected) - 1 >= 11
    for i, (ours, theirs) in enumerate(zip(captured, expected)):
        assert np.array_equal(ours, theirs), i
    with videoio.VideoReader(str(results / "0.mp4")) as video:
        assert (video.frame_count, video.width, video.height) == (len(captured), W, H)


def test_real_videos_inference_rescales_by_face_size_and_stretches_in_tts_mode(pairs, tmp_path, monkeypatch,
                                                                               captured):
    root, clip, speech, checkpoint, _ = pairs
    big = root / "resynced"
    big.mkdir(exist_ok=True)
    video = big / "talk.mp4"
    with videoio.VideoWriter(str(video), 25, 1024, 768) as out:  # shorter side > 720: downscaled first
        for i in range(8):
            out.write(cv2_resize(draw_face(H, W, mouth_open=i / 8, seed=2), (1024, 768)))
    captured.clear()
    filelist = tmp_path / "tts_pairs.txt"
    filelist.write_text(f"talk.mp4 {os.path.relpath(speech, big)}\n")
    # 1024x768 -> 960x720; the face (720 px) is nearest 180 px at 1/4: factor 3 keeps 240 rows >= 200.
    detector = FixedDetector(box=(120, 0, 840, 720))
    monkeypatch.setattr(streaming, "load_face_detector", lambda device: detector)
    results = tmp_path / "results"
    status = real_videos_inference.main(["--mode", "tts", "--filelist", str(filelist), "--data_root", str(big),
                                         "--results_dir", str(results), "--checkpoint_path", checkpoint,
                                         "--min_frame_res", "200", "--quiet"])
    assert status == 0 and os.listdir(results) == ["0.mp4"]
    # 0.6 s of audio, 49 mel frames: 11 windows without the last one; the 8 frames stretched to 11
    # as the published loop does it (meant to be even, each pass repeats the first frame: its
    # counter runs ahead of the index after the first duplicate).
    assert len(captured) == 11 and captured[0].shape == (720 // 3, 960 // 3, 3)
    assert generate.stretched_indices(8, 11) == [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]


def cv2_resize(image, size):
    import cv2
    return cv2.resize(image, size)


def published_increase_frames(frames, length):
    """The published increase_frames, on a list."""
    while len(frames) < length:
        dup_every = float(length) / len(frames)
        final_frames, next_duplicate = [], 0.
        for i, f in enumerate(frames):
            final_frames.append(f)
            if int(np.ceil(next_duplicate)) == i:
                final_frames.append(f)
            next_duplicate += dup_every
        frames = final_frames
    return frames[:length]


def published_factor(face_size, h, w, face_res, min_frame_res):
    diff = np.abs(face_size - face_res)
    for factor in range(2, 16):
        downsampled_res = face_size // factor
        if min(h // factor, w // factor) < min_frame_res:
            break
        if np.abs(downsampled_res - face_res) >= diff:
            break
    return factor - 1


def test_stretch_and_rescale_follow_the_published_loops():
    for count in range(1, 30):
        for length in range(count, 3 * count + 5):
            assert generate.stretched_indices(count, length) == published_increase_frames(list(range(count)),
                                                                                           length)
    for face in (50, 180, 200, 400, 720, 1500, 4000):
        for h, w in ((480, 640), (720, 1280), (1080, 1920), (4320, 7680)):
            for min_res in (100, 480):
                assert generate.face_rescale_factor(face, h, w, 180, min_res) == published_factor(face, h, w, 180,
                                                                                                  min_res)


class TrackDetector:
    """A 150x150 face (on the full frame) in every frame, as FaceAlignment.detect_from_batch gives it."""

    def __init__(self, *args, **kwargs):
        pass

    def detect_from_batch(self, images):
        scale = 0.25  # tracks.py detects on frames scaled by 0.25
        return [np.array([[40 * scale, 20 * scale, 190 * scale, 170 * scale, 0.99]], np.float32) for _ in images]


def test_real_videos_are_scored_per_face_track(tmp_path, monkeypatch, capsys):
    import face_detection
    folder = tmp_path / "videos"
    folder.mkdir()
    write_talking_video(str(folder / "talk.mp4"), seconds=4.6, width=256, height=192, seed=4)  # 115 frames
    write_talking_video(str(folder / "brief.mp4"), seconds=1.0, width=256, height=192, seed=5)  # too short
    net = SyncNet()
    net.load_state_dict(recipe_state_dict(net, evaluation=True))
    weights = str(tmp_path / "syncnet_v2.model")
    torch.save(net.state_dict(), weights)
    monkeypatch.setattr(face_detection, "FaceAlignment", TrackDetector)
    all_scores = tmp_path / "all_scores.txt"
    table = tmp_path / "tracks.csv"
    status = calculate_scores_real_videos.main(["--data_root", str(folder), "--initial_model", weights,
                                                "--all_scores", str(all_scores), "--csv", str(table), "--quiet"])
    out, err = capsys.readouterr()
    assert status == 1
    assert "brief.mp4: no face track" in err and "1 of 2 could not be scored" in err
    lines = all_scores.read_text().splitlines()
    assert len(lines) == 1
    distance, confidence = map(float, lines[0].split())
    assert f"Average Confidence: {confidence}" in out and f"Average Minimum Distance: {distance}" in out
    assert "talk.mp4 track 0 (frames 0-114)" in out
    # The track's score is that of its crops and audio span, scored directly.
    from evaluation import tracks
    track = tracks.Track(frames=np.arange(115), boxes=np.tile([40.0, 20.0, 190.0, 170.0], (115, 1)))
    crops = list(tracks.track_crops(str(folder / "talk.mp4"), track))
    samples = lse.read_audio_int16(str(folder / "talk.mp4"), str(tmp_path))
    expected = lse.SyncScorer(net.eval()).score(iter(crops), tracks.track_audio(samples, track))
    assert abs(expected.min_dist - distance) < 1e-4 and abs(expected.confidence - confidence) < 1e-4
