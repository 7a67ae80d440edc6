"""The published inference.py algorithm, written as the reference does it: everything in memory.

Kept independent of lipsync.py / streaming.py on purpose: tests compare the
streamed frames with these, and bench_inference.py times it as the baseline.

    python benchmarks/reference_inference.py --checkpoint_path w.pth --face v.mp4 --audio a.wav \\
        --box 40 300 120 380 --outfile /tmp/ref.mp4
"""
import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cli import run_main  # noqa: E402

MEL_STEP_SIZE = 16
IMG_SIZE = 96


def get_smoothened_boxes(boxes, T):
    for i in range(len(boxes)):
        if i + T > len(boxes):
            window = boxes[len(boxes) - T:]
        else:
            window = boxes[i: i + T]
        boxes[i] = np.mean(window, axis=0)
    return boxes


def face_detect(images, detector, pads, nosmooth, batch_size):
    predictions = []
    for i in range(0, len(images), batch_size):
        predictions.extend(detector.get_detections_for_batch(np.array(images[i:i + batch_size])))
    results = []
    pady1, pady2, padx1, padx2 = pads
    for rect, image in zip(predictions, images):
        if rect is None:
            raise ValueError("Face not detected! Ensure the video contains a face in all the frames.")
        y1 = max(0, rect[1] - pady1)
        y2 = min(image.shape[0], rect[3] + pady2)
        x1 = max(0, rect[0] - padx1)
        x2 = min(image.shape[1], rect[2] + padx2)
        results.append([x1, y1, x2, y2])
    boxes = np.array(results)
    if not nosmooth:
        boxes = get_smoothened_boxes(boxes, T=5)
    return [[image[y1:y2, x1:x2], (y1, y2, x1, x2)] for image, (x1, y1, x2, y2) in zip(images, boxes)]


def read_frames(face, static, fps, resize_factor, rotate, crop):
    import cv2
    if os.path.splitext(face)[1].lower() in (".jpg", ".png", ".jpeg"):
        return [cv2.imread(face)], fps, True
    stream = cv2.VideoCapture(face)
    fps = stream.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = stream.read()
        if not ok:
            stream.release()
            break
        if resize_factor > 1:
            frame = cv2.resize(frame, (frame.shape[1] // resize_factor, frame.shape[0] // resize_factor))
        if rotate:
            frame = cv2.rotate(frame, cv2.ROTATE_90_CLOCKWISE)
        y1, y2, x1, x2 = crop
        if x2 == -1:
            x2 = frame.shape[1]
        if y2 == -1:
            y2 = frame.shape[0]
        frames.append(frame[y1:y2, x1:x2])
    return frames, fps, static


def mel_chunks_of(mel, fps):
    chunks = []
    step = 80. / fps
    i = 0
    while True:
        start = int(i * step)
        if start + MEL_STEP_SIZE > len(mel[0]):
            chunks.append(mel[:, len(mel[0]) - MEL_STEP_SIZE:])
            break
        chunks.append(mel[:, start: start + MEL_STEP_SIZE])
        i += 1
    return chunks


def datagen(frames, mels, face_det_results, static, batch_size, img_size=IMG_SIZE):
    import cv2
    img_batch, mel_batch, frame_batch, coords_batch = [], [], [], []
    for i, m in enumerate(mels):
        idx = 0 if static else i % len(frames)
        frame_to_save = frames[idx].copy()
        face, coords = face_det_results[idx].copy()
        face = cv2.resize(face, (img_size, img_size))
        img_batch.append(face)
        mel_batch.append(m)
        frame_batch.append(frame_to_save)
        coords_batch.append(coords)
        if len(img_batch) >= batch_size:
            yield finish_batch(img_batch, mel_batch, img_size), frame_batch, coords_batch
            img_batch, mel_batch, frame_batch, coords_batch = [], [], [], []
    if img_batch:
        yield finish_batch(img_batch, mel_batch, img_size), frame_batch, coords_batch


def finish_batch(img_batch, mel_batch, img_size=IMG_SIZE):
    img_batch, mel_batch = np.asarray(img_batch), np.asarray(mel_batch)
    img_masked = img_batch.copy()
    img_masked[:, img_size // 2:] = 0
    img_batch = np.concatenate((img_masked, img_batch), axis=3) / 255.
    mel_batch = np.reshape(mel_batch, [len(mel_batch), mel_batch.shape[1], mel_batch.shape[2], 1])
    return img_batch, mel_batch


def reference_frames(checkpoint_path, face, audio_path, box=(-1, -1, -1, -1), pads=(0, 10, 0, 0),
                     static=False, fps=25., resize_factor=1, crop=(0, -1, 0, -1), rotate=False,
                     nosmooth=False, face_det_batch_size=16, wav2lip_batch_size=128, detector=None):
    """All output frames (BGR uint8) of the published algorithm on CPU, and the fps.

    At the checkpoint's face size: 96 (the published files), or 288 (HD.md: the same
    algorithm at the larger crop)."""
    import cv2
    import torch
    import audio
    from checkpoints import checkpoint_img_size, load_model
    from models import Wav2Lip

    frames, fps, static = read_frames(face, static, fps, resize_factor, rotate, crop)
    wav = audio.load_wav(audio_path, 16000)
    mel = audio.melspectrogram(wav)
    mels = mel_chunks_of(mel, fps)
    frames = frames[:len(mels)]
    if box[0] == -1:
        if detector is None:
            from streaming import load_face_detector
            detector = load_face_detector("cpu")
        images = frames if not static else [frames[0]]
        face_det_results = face_detect(images, detector, pads, nosmooth, face_det_batch_size)
    else:
        y1, y2, x1, x2 = box
        face_det_results = [[f[y1: y2, x1:x2], (y1, y2, x1, x2)] for f in frames]
    img_size = checkpoint_img_size(checkpoint_path)
    model = Wav2Lip(img_size)
    load_model(model, checkpoint_path, "cpu")
    model.eval()
    out = []
    for (img_batch, mel_batch), frame_batch, coords_batch in datagen(frames, mels, face_det_results,
                                                                       static, wav2lip_batch_size, img_size):
        img_batch = torch.FloatTensor(np.transpose(img_batch, (0, 3, 1, 2)))
        mel_batch = torch.FloatTensor(np.transpose(mel_batch, (0, 3, 1, 2)))
        with torch.no_grad():
            pred = model(mel_batch, img_batch)
        pred = pred.cpu().numpy().transpose(0, 2, 3, 1) * 255.
        for p, f, c in zip(pred, frame_batch, coords_batch):
            y1, y2, x1, x2 = c
            p = cv2.resize(p.astype(np.uint8), (x2 - x1, y2 - y1))
            f[y1:y2, x1:x2] = p
            out.append(f)
    return out, fps


def write_like_reference(frames, fps, audio_path, outfile):
    """cv2 DIVX AVI in a temporary folder, then ffmpeg muxes the audio (as the reference)."""
    import cv2
    from videoio import run_ffmpeg
    with tempfile.TemporaryDirectory() as tmp:
        avi = os.path.join(tmp, "result.avi")
        height, width = frames[0].shape[:2]
        writer = cv2.VideoWriter(avi, cv2.VideoWriter_fourcc(*"DIVX"), fps, (width, height))
        for frame in frames:
            writer.write(frame)
        writer.release()
        run_ffmpeg(["-i", audio_path, "-i", avi, "-strict", "-2", "-q:v", "1", outfile], "to mux")


def main(argv=None):
    p = argparse.ArgumentParser(description="the published inference algorithm, in memory")
    p.add_argument("--checkpoint_path", required=True)
    p.add_argument("--face", required=True)
    p.add_argument("--audio", required=True)
    p.add_argument("--outfile", required=True)
    p.add_argument("--box", nargs=4, type=int, default=[-1, -1, -1, -1])
    p.add_argument("--wav2lip_batch_size", type=int, default=128)
    args = p.parse_args(argv)
    frames, fps = reference_frames(args.checkpoint_path, args.face, args.audio, box=args.box,
                                   wav2lip_batch_size=args.wav2lip_batch_size)
    write_like_reference(frames, fps, args.audio, args.outfile)


if __name__ == "__main__":
    run_main(main)
