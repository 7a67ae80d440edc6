"""Dub the ReSyncED real videos (random, dubbed or tts pairs) for scoring, as the paper did.

    python evaluation/real_videos_inference.py --mode dubbed --data_root resynced/dubbed \\
        --results_dir results/dubbed --checkpoint_path checkpoints/wav2lip_gan.pth
    python evaluation/real_videos_inference.py --mode tts --filelist resynced/tts_pairs.txt \\
        --data_root resynced/tts --results_dir results/tts --checkpoint_path checkpoints/wav2lip_gan.pth
    bash evaluation/scores_LSE/calculate_scores_real_videos.sh results/tts

Each filelist line is `<face video> <audio source>` (file names under
--data_root, as the published script reads them); `--mode dubbed` pairs every
file of --data_root with itself. Frames are downscaled to a shorter side of at
most --max_frame_res, then by the factor that brings the first frame's face
nearest --face_res pixels (never below --min_frame_res). In tts mode a video
shorter than its audio is stretched as the published script does (which, for
all its intent to spread duplicates evenly, repeats the first frame); otherwise
that pair is skipped. Results: <results_dir>/<line index>.mp4.
"""
import argparse
import os
import sys

if __package__ in (None, ""):  # run as a file: make the project's modules importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cli import UserError, run_main


def build_parser():
    from evaluation.generate import add_generation_arguments
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", required=True, choices=("random", "dubbed", "tts"),
                   help="random or tts: pairs of --filelist; dubbed: each video with its own audio")
    p.add_argument("--filelist", default=None, help="pair list: <face video> <audio source> per line")
    add_generation_arguments(p, pads=(0, 10, 0, 0), face_det_batch_size=16)
    p.add_argument("--face_res", type=int, default=180, help="approximate face size to test at, in pixels")
    p.add_argument("--min_frame_res", type=int, default=480,
                   help="do not downsample the shorter side below this")
    p.add_argument("--max_frame_res", type=int, default=720, help="downsample the shorter side to at most this")
    return p


def main(argv=None):
    from evaluation.generate import (PairDubber, PairOptions, check_generation_arguments, dub_pairs,
                                     read_pair_lines, report)
    args = build_parser().parse_args(argv)
    check_generation_arguments(args)
    for name in ("face_res", "min_frame_res", "max_frame_res"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.mode == "dubbed":
        names = sorted(os.listdir(args.data_root))
        lines = [(index, name, name) for index, name in enumerate(names)]
    elif args.filelist is None:
        raise UserError(f"--mode {args.mode} needs --filelist")
    else:
        lines = read_pair_lines(args.filelist)
    pairs = [(index, os.path.join(args.data_root, video), os.path.join(args.data_root, audio))
             for index, video, audio in lines]
    options = PairOptions(pads=tuple(args.pads), face_det_batch_size=args.face_det_batch_size,
                          wav2lip_batch_size=args.wav2lip_batch_size, max_frame_res=args.max_frame_res,
                          face_res=args.face_res, min_frame_res=args.min_frame_res,
                          stretch=args.mode == "tts")
    dubber = PairDubber(args.checkpoint_path, options, args.device, args.precision)
    failures = dub_pairs(dubber, pairs, args.results_dir, resume=args.resume, progress=not args.quiet)
    return report(failures, len(pairs), args.results_dir)


if __name__ == "__main__":
    sys.exit(run_main(main))
