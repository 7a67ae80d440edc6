"""Dub the test pairs of a filelist (LRS2, LRS3, LRW) for scoring, as the paper's evaluation does.

    python evaluation/gen_videos_from_filelist.py --filelist test_filelists/lrs2.txt \\
        --data_root lrs2/main --results_dir results/lrs2 --checkpoint_path checkpoints/wav2lip.pth
    python evaluation/scores_LSE/calculate_scores_LRS.py --data_root results/lrs2

Each line is `<audio clip> <video clip>` (names under --data_root, `.mp4`
appended): the video's face is dubbed with the other clip's audio and written
to <results_dir>/<line index>.mp4. Pairs whose video is shorter than the audio,
or with a frame without a face, are skipped as in the reference (and listed).
"""
import argparse
import os
import sys

if __package__ in (None, ""):  # run as a file: make the project's modules importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cli import run_main


def build_parser():
    from evaluation.generate import add_generation_arguments
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--filelist", required=True, help="pair list: <audio clip> <video clip> per line")
    add_generation_arguments(p, pads=(0, 0, 0, 0), face_det_batch_size=64)
    return p


def main(argv=None):
    from evaluation.generate import (PairDubber, PairOptions, check_generation_arguments, dub_pairs,
                                     read_pair_lines, report)
    args = build_parser().parse_args(argv)
    check_generation_arguments(args)
    lines = read_pair_lines(args.filelist)
    pairs = [(index, os.path.join(args.data_root, video) + ".mp4", os.path.join(args.data_root, audio) + ".mp4")
             for index, audio, video in lines]
    options = PairOptions(pads=tuple(args.pads), face_det_batch_size=args.face_det_batch_size,
                          wav2lip_batch_size=args.wav2lip_batch_size, fps=25.0)
    dubber = PairDubber(args.checkpoint_path, options, args.device, args.precision)
    failures = dub_pairs(dubber, pairs, args.results_dir, resume=args.resume, progress=not args.quiet)
    return report(failures, len(pairs), args.results_dir)


if __name__ == "__main__":
    sys.exit(run_main(main))
