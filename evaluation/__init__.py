"""Scoring lip sync and image quality as the Wav2Lip paper does: LSE-D, LSE-C and FID.

    python evaluation/gen_videos_from_filelist.py --filelist test_filelists/lrs2.txt ...
    python evaluation/scores_LSE/calculate_scores_LRS.py --data_root results/ --csv lse.csv
    python evaluation/fid.py real_frames/ results/

The scripts keep the published names and flags; the networks (syncnet_python's
SyncNet, pytorch-fid's InceptionV3) load the published weight files strict.
Importing this package does no work.
"""
