"""The published LSE scoring (Wav2Lip's evaluation/scores_LSE, SyncNetInstance.evaluate), ported as the oracle.

Same steps as the reference, on CPU: ffmpeg writes every frame to a JPEG file
and the audio to a WAV; the JPEGs are read back, resized to 224x224 and
stacked into one float64 array (the whole video in memory); the MFCC of the
whole audio; batches of 20 windows through SyncNet's published 3-D lip branch;
the distances one window at a time. Only the shell strings are gone (argument
lists), and the network is this project's SyncNet module.

    python benchmarks/reference_lse.py --videofile result.mp4 --initial_model checkpoints/syncnet_v2.model
"""
import argparse
import glob
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def calc_pdist(feat1, feat2, vshift=10):
    import torch
    win_size = vshift * 2 + 1
    feat2p = torch.nn.functional.pad(feat2, (0, 0, vshift, vshift))
    dists = []
    for i in range(0, len(feat1)):
        dists.append(torch.nn.functional.pairwise_distance(feat1[[i], :].repeat(win_size, 1),
                                                           feat2p[i:i + win_size, :]))
    return dists


def evaluate(net, videofile, batch_size=20, vshift=15, tmp_dir=None):
    """(offset, confidence, min_dist) of one video, as the reference computes them."""
    import cv2
    import python_speech_features
    import torch
    from scipy.io import wavfile
    from videoio import ffmpeg_exe
    with tempfile.TemporaryDirectory(dir=tmp_dir) as work:
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", videofile, "-threads", "1", "-f", "image2",
                        os.path.join(work, "%06d.jpg")], check=True)
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", videofile, "-ac", "1", "-vn",
                        "-acodec", "pcm_s16le", "-ar", "16000", os.path.join(work, "audio.wav")], check=True)
        images = []
        for fname in sorted(glob.glob(os.path.join(work, "*.jpg"))):
            images.append(cv2.resize(cv2.imread(fname), (224, 224)))
        im = np.stack(images, axis=3)
        im = np.expand_dims(im, axis=0)
        im = np.transpose(im, (0, 3, 4, 1, 2))
        imtv = torch.from_numpy(im.astype(float)).float()
        sample_rate, audio = wavfile.read(os.path.join(work, "audio.wav"))
    mfcc = zip(*python_speech_features.mfcc(audio, sample_rate))
    mfcc = np.stack([np.array(i) for i in mfcc])
    cc = np.expand_dims(np.expand_dims(mfcc, axis=0), axis=0)
    cct = torch.from_numpy(cc.astype(float)).float()
    min_length = min(len(images), math.floor(len(audio) / 640))
    lastframe = min_length - 5
    im_feat, cc_feat = [], []
    with torch.no_grad():
        for i in range(0, lastframe, batch_size):
            im_batch = [imtv[:, :, vframe:vframe + 5, :, :] for vframe in range(i, min(lastframe, i + batch_size))]
            im_feat.append(net.forward_lip(torch.cat(im_batch, 0)))
            cc_batch = [cct[:, :, :, vframe * 4:vframe * 4 + 20] for vframe in range(i, min(lastframe, i + batch_size))]
            cc_feat.append(net.forward_aud(torch.cat(cc_batch, 0)))
    im_feat = torch.cat(im_feat, 0)
    cc_feat = torch.cat(cc_feat, 0)
    dists = calc_pdist(im_feat, cc_feat, vshift=vshift)
    mdist = torch.mean(torch.stack(dists, 1), 1)
    minval, minidx = torch.min(mdist, 0)
    offset = vshift - minidx
    conf = torch.median(mdist) - minval
    return int(offset), float(conf), float(minval)


def main(argv=None):
    from evaluation.syncnet import load_syncnet
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videofile", required=True)
    p.add_argument("--initial_model", required=True)
    p.add_argument("--batch_size", type=int, default=20)
    p.add_argument("--vshift", type=int, default=15)
    args = p.parse_args(argv)
    net = load_syncnet(args.initial_model, "cpu")
    offset, conf, dist = evaluate(net, args.videofile, args.batch_size, args.vshift)
    print(f"offset {offset} confidence {conf} min_dist {dist}")
    return offset, conf, dist


if __name__ == "__main__":
    main()
