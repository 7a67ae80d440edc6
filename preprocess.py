"""Crop the faces of LRS2-style videos into the layout the trainers read (SPEC section 7).

    python preprocess.py --data_root mvlrs_v1/main --preprocessed_root lrs2_preprocessed
    python preprocess.py --data_root mvlrs_v1/main --preprocessed_root lrs2_preprocessed --ngpu 2 --batch_size 64
    python preprocess.py --data_root my_videos --preprocessed_root my_preprocessed --ngpu 0 --max_side 320

In: data_root/<group>/<clip>.mp4. Out: preprocessed_root/<group>/<clip>/<i>.jpg,
the face crop of frame i (0-based; a frame without a face has no file), and
audio.wav (16 kHz mono). Each clip is written to a hidden temporary folder and
renamed when whole, so a rerun skips finished clips and redoes interrupted ones.
A video that fails is skipped; every failure is listed at the end and in the log.
"""
import argparse
import glob
import os
import queue
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from cli import UserError, run_main


def find_videos(data_root):
    return sorted(glob.glob(os.path.join(glob.escape(data_root), "*", "*.mp4")))


def output_dir(preprocessed_root, video_path):
    """preprocessed_root/<group>/<clip> for data_root/<group>/<clip>.mp4."""
    group = os.path.basename(os.path.dirname(video_path))
    clip = os.path.splitext(os.path.basename(video_path))[0]
    return os.path.join(preprocessed_root, group, clip)


def temporary_dir(clip_dir):
    # Hidden, beside the final folder (same file system, so the rename is atomic).
    return os.path.join(os.path.dirname(clip_dir), f".{os.path.basename(clip_dir)}.tmp")


def pick_devices(ngpu):
    """One torch device per worker: cuda:0..ngpu-1, or a single CPU (MPS) worker when no GPU is given."""
    import torch

    from devices import get_device
    if ngpu < 0:
        raise UserError(f"--ngpu must be 0 or more, got {ngpu}")
    if ngpu == 0:
        return [get_device("cpu")]
    if not torch.cuda.is_available():
        device = get_device("auto")
        print(f"no CUDA GPU found: detecting faces on {device}", file=sys.stderr)
        return [device]
    if ngpu > torch.cuda.device_count():
        raise UserError(f"--ngpu {ngpu} asked for, but only {torch.cuda.device_count()} GPUs exist")
    return [get_device(f"cuda:{i}") for i in range(ngpu)]


def crop_faces(video_path, out_dir, batched):
    """Write the face crop of every frame of a video into out_dir; returns (frames read, crops written)."""
    import cv2

    from videoio import VideoReader
    frames = crops = 0
    with VideoReader(video_path) as video:
        for i, (frame, box) in enumerate(batched.stream(video)):
            frames += 1
            if box is None:
                continue
            x1, y1, x2, y2 = box
            crop = frame[y1:y2, x1:x2]
            if crop.size == 0:  # a box wholly outside the frame: no face to crop
                continue
            jpg = os.path.join(out_dir, f"{i}.jpg")
            if not cv2.imwrite(jpg, crop):
                raise OSError(f"cannot write {jpg}")
            crops += 1
    if frames == 0:
        raise UserError(f"{video_path}: no frame could be decoded")
    return frames, crops


def process_video(video_path, clip_dir, batched, sample_rate):
    """Face crops and audio.wav into a temporary folder, renamed to clip_dir only when the clip is complete."""
    from videoio import extract_audio
    tmp = temporary_dir(clip_dir)
    if os.path.isdir(tmp):  # left behind by an interrupted run
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        with ThreadPoolExecutor(1) as audio_worker:  # ffmpeg decodes the audio while faces are detected
            audio = audio_worker.submit(extract_audio, video_path, os.path.join(tmp, "audio.wav"), sample_rate)
            result = crop_faces(video_path, tmp, batched)
            audio.result()
        os.rename(tmp, clip_dir)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
    return result


def log_line(log, text):
    log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
    log.flush()


def run_pending(videos, args, devices, log):
    """Process `videos` on one worker thread per device; returns (frames, crops, failures)."""
    import cv2
    import torch
    from tqdm import tqdm

    from face_detection import BatchedDetection, FaceAlignment, ensure_weights
    from hparams import hparams
    weights = ensure_weights(args.detector)  # download once, before the workers start
    if any(device.type == "cuda" for device in devices):
        torch.backends.cudnn.benchmark = True  # one frame size per video: tune the convolutions once
    idle = queue.Queue()  # detectors not in use; a worker takes one per video
    for device in devices:
        idle.put(BatchedDetection(FaceAlignment(device=device, path_to_detector=weights,
                                                max_side=args.max_side), args.batch_size))

    def job(video):
        batched = idle.get()
        try:
            return process_video(video, output_dir(args.preprocessed_root, video), batched,
                                 hparams.sample_rate)
        finally:
            idle.put(batched)

    frames = crops = 0
    failures = []
    with ThreadPoolExecutor(len(devices)) as pool:
        futures = {pool.submit(job, video): video for video in videos}
        try:
            for future in tqdm(as_completed(futures), total=len(futures), unit="video"):
                video = futures[future]
                try:
                    n_frames, n_crops = future.result()
                except (UserError, OSError, ValueError, cv2.error) as e:
                    reason = " ".join(str(e).split()).removeprefix(f"{video}: ") or type(e).__name__
                    failures.append((video, reason))
                    log_line(log, f"FAILED {video}: {reason}")
                    continue
                frames += n_frames
                crops += n_crops
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)  # clips in flight finish or are discarded
            raise
    return frames, crops, failures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", required=True, help="folder of <group>/<clip>.mp4 videos (LRS2: mvlrs_v1/main)")
    parser.add_argument("--preprocessed_root", required=True, help="output folder of <group>/<clip>/ crops")
    parser.add_argument("--batch_size", type=int, default=32,
                        help="frames per face-detection batch; halved automatically on out-of-memory (default 32)")
    parser.add_argument("--ngpu", type=int, default=1,
                        help="number of GPUs, one worker each; 0 or no GPU: the CPU (default 1)")
    parser.add_argument("--detector", default=None,
                        help="S3FD weights (default face_detection/detection/sfd/s3fd.pth, downloaded if missing)")
    parser.add_argument("--max_side", type=int, default=None,
                        help="detect on frames downscaled to this longest side (faster, less accurate; default off)")
    parser.add_argument("--log_file", default=None,
                        help="append the run's summary and failures here (default <preprocessed_root>/preprocess_log.txt)")
    args = parser.parse_args(argv)

    if not os.path.isdir(args.data_root):
        raise UserError(f"{args.data_root}: data root not found")
    if args.batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {args.batch_size}")
    videos = find_videos(args.data_root)
    if not videos:
        raise UserError(f"{args.data_root}: no videos found as <group>/<clip>.mp4")
    pending = [v for v in videos if not os.path.isdir(output_dir(args.preprocessed_root, v))]
    done = len(videos) - len(pending)
    if not pending:
        print(f"all {len(videos)} clips already preprocessed in {args.preprocessed_root}: nothing to do")
        return {"processed": 0, "already_done": done, "failed": [], "frames": 0, "crops": 0, "seconds": 0.0}
    devices = pick_devices(args.ngpu)

    os.makedirs(args.preprocessed_root, exist_ok=True)
    log_path = args.log_file or os.path.join(args.preprocessed_root, "preprocess_log.txt")
    start = time.perf_counter()
    with open(log_path, "a") as log:
        log_line(log, f"start: {len(pending)} of {len(videos)} videos in {args.data_root} to do "
                      f"({done} already done) on {', '.join(map(str, devices))}")
        frames, crops, failures = run_pending(pending, args, devices, log)
        seconds = time.perf_counter() - start
        summary = (f"processed {len(pending) - len(failures)} videos ({frames} frames, {crops} face crops) "
                   f"in {seconds:.1f} s ({frames / max(seconds, 1e-9):.1f} frames/s); {done} were already done; "
                   f"{len(failures)} failed")
        log_line(log, summary)
    print(summary)
    if failures:
        for video, reason in failures:
            print(f"  failed: {video}: {reason}", file=sys.stderr)
        raise UserError(f"{len(failures)} of {len(pending)} videos failed (listed above and in {log_path}); "
                        "rerun to retry them")
    return {"processed": len(pending), "already_done": done, "failed": failures, "frames": frames,
            "crops": crops, "seconds": seconds}


if __name__ == "__main__":
    run_main(main)
