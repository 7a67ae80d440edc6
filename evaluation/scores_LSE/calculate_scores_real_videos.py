"""LSE-D and LSE-C of real videos, per face track, as the paper scores ReSyncED.

    bash evaluation/scores_LSE/calculate_scores_real_videos.sh results/tts
    python evaluation/scores_LSE/calculate_scores_real_videos.py --data_root results/tts --csv tracks.csv
    python evaluation/scores_LSE/calculate_scores_real_videos.py --videofile talk.mp4

Each video is cut into face tracks as syncnet_python's run_pipeline does
(shots, S3FD faces, IoU tracking, crops; see evaluation/tracks.py), and each
track is scored with its span of the audio. One line per track, `<LSE-D>
<LSE-C>` as the reference wrote them, goes to --all_scores; the run ends with
the averages over all tracks. A video with no face track, or unreadable, is
reported and skipped; the exit status is then 1.
"""
import argparse
import os
import sys

if __package__ in (None, ""):  # run as a file: make the project's modules importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from cli import UserError, run_main


def build_parser():
    from evaluation.lse import add_scoring_arguments
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data_root", help="folder of videos: every file in it is scored")
    source.add_argument("--videofile", help="one video to score")
    add_scoring_arguments(p)
    p.add_argument("--all_scores", default=None, help="append '<LSE-D> <LSE-C>' per track to this file")
    p.add_argument("--detector", default=None, help="S3FD weights (default face_detection/detection/sfd/s3fd.pth)")
    p.add_argument("--face_det_batch_size", type=int, default=32, help="frames per face-detector batch")
    return p


def videos_of(args):
    if args.videofile is not None:
        if not os.path.isfile(args.videofile):
            raise UserError(f"{args.videofile}: file not found (--videofile)")
        return [args.videofile]
    if not os.path.isdir(args.data_root):
        raise UserError(f"{args.data_root}: folder not found (--data_root)")
    videos = sorted(os.path.join(args.data_root, name) for name in os.listdir(args.data_root)
                    if not name.startswith(".") and os.path.isfile(os.path.join(args.data_root, name)))
    if not videos:
        raise UserError(f"{args.data_root}: no videos to score")
    return videos


def score_tracks(video, scorer, detector, args):
    """[(track name, SyncScore)] of one video; UserError when it has no track or cannot be read."""
    import tempfile
    from evaluation.lse import read_audio_int16
    from evaluation.tracks import face_tracks, track_audio, track_crops
    try:
        tracks = face_tracks(video, detector, batch_size=args.face_det_batch_size)
    except ValueError as e:  # frames too small for the detector
        raise UserError(f"{video}: {e}") from None
    if not tracks:
        raise UserError(f"{video}: no face track (a face of over 100 px seen for over 4 s in one shot)")
    scores = []
    with tempfile.TemporaryDirectory(prefix="lse-", dir=args.tmp_dir) as workdir:
        samples = read_audio_int16(video, workdir)
        for number, track in enumerate(tracks):
            name = f"{os.path.basename(video)} track {number} (frames {track.frames[0]}-{track.frames[-1]})"
            crops = track_crops(video, track)
            try:
                scores.append((name, scorer.score(crops, track_audio(samples, track), name=name)))
            finally:
                crops.close()
    return scores


def main(argv=None):
    from face_detection import FaceAlignment
    from tqdm import tqdm
    from evaluation.lse import ScoreTable, scorer_from_args
    args = build_parser().parse_args(argv)
    if args.face_det_batch_size < 1:
        raise UserError(f"--face_det_batch_size must be at least 1, got {args.face_det_batch_size}")
    videos = videos_of(args)
    scorer = scorer_from_args(args)
    detector = FaceAlignment(device=str(scorer.device), path_to_detector=args.detector)
    table = ScoreTable()
    lines = []
    for video in tqdm(videos, unit="video", disable=args.quiet):
        try:
            scores = score_tracks(video, scorer, detector, args)
        except UserError as e:
            tqdm.write(f"skipped: {e}", file=sys.stderr)
            table.fail(video, str(e).removeprefix(f"{video}: "))
            continue
        for name, score in scores:
            table.add(name, score)
            lines.append(f"{score.min_dist} {score.confidence}")
            tqdm.write(f"{name}: LSE-D {score.min_dist:.3f}, LSE-C {score.confidence:.3f}, offset {score.offset}")
    if args.all_scores and lines:
        with open(args.all_scores, "a") as out:
            out.write("".join(line + "\n" for line in lines))
    if args.csv and table.rows:
        table.write_csv(args.csv)
    return table.print_summary()


if __name__ == "__main__":
    sys.exit(run_main(main))
