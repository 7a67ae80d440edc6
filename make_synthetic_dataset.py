"""Write a synthetic "talking face" dataset in the preprocessed layout (SPEC section 7).

Each clip is speech-like audio (audio.wav, 16 kHz) and 25 fps face crops 0.jpg ..
N-1.jpg whose mouth opening follows the audio's loudness during that frame, so a
lip-sync expert can learn to tell in-sync from shifted windows.

    python make_synthetic_dataset.py --out_root synthetic_data --clips 40 --seconds 4
    python color_syncnet_train.py --data_root synthetic_data --filelists_dir synthetic_data/filelists \\
        --checkpoint_dir checkpoints/synth_expert
    python make_synthetic_dataset.py --out_root shifted_data --clips 20 --max_audio_shift 6   # for sync_audit.py

Writes <out_root>/synth/clipNNNNN/{audio.wav,0.jpg,...} and the filelists
train.txt, val.txt, test.txt (val and test hold --held_out clips each).
"""
import argparse
import os

import numpy as np

from cli import UserError, run_main

GROUP = "synth"


def shift_audio(wav, frames, samples_per_frame):
    """wav delayed by `frames` video frames (advanced when negative), zero-filled, same length."""
    n = abs(int(frames)) * samples_per_frame
    if n == 0:
        return wav
    if n >= len(wav):
        return np.zeros_like(wav)
    silence = np.zeros(n, wav.dtype)
    return np.concatenate([silence, wav[:-n]]) if frames > 0 else np.concatenate([wav[n:], silence])


def write_dataset(out_root, clips, seconds, held_out=2, size=96, seed=0, filelists_dir=None, fps=25,
                  sample_rate=16000, progress=True, max_audio_shift=0):
    """Write the clips and filelists; returns {split: [clip names]}.

    max_audio_shift: delay (or advance) each clip's audio by a random whole number of
    frames in [-max, max], so the clip is out of sync by a known amount; the shifts are
    written to <out_root>/audio_shifts.csv (clip, shift_frames, expected_offset, the
    offset sync_audit.py should report: syncnet_python's sign, -shift).
    """
    import cv2
    from tqdm import tqdm

    from audio import save_wav
    from synthetic import talking_face_clip

    if clips < 1 + 2 * held_out:
        raise UserError(f"--clips {clips}: need at least {1 + 2 * held_out} clips for --held_out {held_out}")
    names = [f"{GROUP}/clip{i:05d}" for i in range(clips)]
    rng, shifts = np.random.RandomState(seed + 7), {}
    for i, name in enumerate(tqdm(names, desc="clips", disable=not progress)):
        folder = os.path.join(out_root, name)
        os.makedirs(folder, exist_ok=True)
        wav, frames = talking_face_clip(seconds, size, fps, sample_rate, seed=seed * 100003 + i)
        if max_audio_shift:
            shifts[name] = int(rng.randint(-max_audio_shift, max_audio_shift + 1))
            wav = shift_audio(wav, shifts[name], sample_rate // fps)
        save_wav(wav, os.path.join(folder, "audio.wav"), sample_rate)
        for f, frame in enumerate(frames):
            cv2.imwrite(os.path.join(folder, f"{f}.jpg"), frame)
    splits = {"val": names[:held_out], "test": names[held_out:2 * held_out], "train": names[2 * held_out:]}
    filelists_dir = filelists_dir or os.path.join(out_root, "filelists")
    os.makedirs(filelists_dir, exist_ok=True)
    for split, members in splits.items():
        with open(os.path.join(filelists_dir, f"{split}.txt"), "w") as f:
            f.writelines(f"{name}\n" for name in members)
    if max_audio_shift:
        with open(os.path.join(out_root, "audio_shifts.csv"), "w") as f:
            f.write("clip,shift_frames,expected_offset\n")
            f.writelines(f"{name},{k},{-k}\n" for name, k in shifts.items())
    return splits


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_root", required=True, help="folder to write the clips into")
    parser.add_argument("--clips", type=int, default=40, help="number of clips (default 40)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each clip (default 4)")
    parser.add_argument("--held_out", type=int, default=4, help="clips in val.txt and in test.txt (default 4)")
    parser.add_argument("--size", type=int, default=96, help="face crop size in pixels (default 96)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--filelists_dir", default=None, help="where to write the filelists "
                        "(default <out_root>/filelists)")
    parser.add_argument("--max_audio_shift", type=int, default=0,
                        help="shift each clip's audio by a random number of frames in [-N, N] "
                             "(known sync errors, for sync_audit.py; listed in audio_shifts.csv)")
    args = parser.parse_args(argv)
    if args.seconds * 25 <= 15 or args.size < 16:
        raise UserError("--seconds must give more than 15 frames (> 0.6 s) and --size be at least 16")
    if args.max_audio_shift < 0:
        raise UserError(f"--max_audio_shift must not be negative, got {args.max_audio_shift}")
    splits = write_dataset(args.out_root, args.clips, args.seconds, args.held_out, args.size, args.seed,
                           args.filelists_dir, max_audio_shift=args.max_audio_shift)
    print(f"wrote {args.clips} clips to {args.out_root} "
          f"({len(splits['train'])} train, {len(splits['val'])} val, {len(splits['test'])} test)")


if __name__ == "__main__":
    run_main(main)
