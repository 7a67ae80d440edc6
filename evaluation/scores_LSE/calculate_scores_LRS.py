"""LSE-D and LSE-C of every video in a folder, as the Wav2Lip paper scores LRS2/LRS3/LRW.

    python evaluation/scores_LSE/calculate_scores_LRS.py --data_root results/lrs2
    python evaluation/scores_LSE/calculate_scores_LRS.py --data_root results/lrs2 --csv lse.csv \\
        --initial_model checkpoints/syncnet_v2.model --device cuda

Every `*.mp4` of --data_root is scored whole (frames as JPEG at 25 fps, audio
at 16 kHz, syncnet_python's SyncNet); the run ends with the reference's two
lines, `Average Confidence: X` (LSE-C, higher is better) and `Average Minimum
Distance: Y` (LSE-D, lower is better). A video that cannot be scored is
reported and skipped; the exit status is then 1.
"""
import argparse
import glob
import os
import sys

if __package__ in (None, ""):  # run as a file: make the project's modules importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from cli import UserError, run_main


def build_parser():
    from evaluation.lse import add_scoring_arguments
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_root", required=True, help="folder of the videos to score (*.mp4)")
    add_scoring_arguments(p)
    return p


def main(argv=None):
    from tqdm import tqdm
    from evaluation.lse import ScoreTable, score_video, scorer_from_args
    args = build_parser().parse_args(argv)
    if not os.path.isdir(args.data_root):
        raise UserError(f"{args.data_root}: folder not found (--data_root)")
    videos = sorted(glob.glob(os.path.join(glob.escape(args.data_root), "*.mp4")))
    if not videos:
        raise UserError(f"{args.data_root}: no .mp4 videos to score")
    scorer = scorer_from_args(args)
    table = ScoreTable()
    bar = tqdm(videos, unit="video", disable=args.quiet)
    for video in bar:
        try:
            table.add(os.path.basename(video), score_video(video, scorer, args.tmp_dir))
        except UserError as e:
            tqdm.write(f"skipped: {e}", file=sys.stderr)
            table.fail(video, str(e).removeprefix(f"{video}: "))
            continue
        confidence, distance = table.averages()
        bar.set_description(f"Avg Confidence: {confidence:.3f}, Avg Minimum Dist: {distance:.3f}")
    if args.csv and table.rows:
        table.write_csv(args.csv)
    return table.print_summary()


if __name__ == "__main__":
    sys.exit(run_main(main))
