#!/usr/bin/env bash
# LSE-D / LSE-C of every video in a folder, per face track, as the published script:
#   bash evaluation/scores_LSE/calculate_scores_real_videos.sh results/tts [more flags]
# Writes all_scores.txt ('<LSE-D> <LSE-C>' per track, started afresh) and prints the averages.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 VIDEO_FOLDER [flags of calculate_scores_real_videos.py]" >&2
    exit 2
fi
folder=$1
shift
rm -f all_scores.txt
exec python "$(dirname "$0")/calculate_scores_real_videos.py" --data_root "$folder" --all_scores all_scores.txt "$@"
