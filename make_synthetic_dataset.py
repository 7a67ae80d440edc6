"""Write a synthetic "talking face" dataset in the preprocessed layout (SPEC section 7).

Each clip is speech-like audio (audio.wav, 16 kHz) and 25 fps face crops 0.jpg ..
N-1.jpg whose mouth opening follows the audio's loudness during that frame, so a
lip-sync expert can learn to tell in-sync from shifted windows.

    python make_synthetic_dataset.py --out_root synthetic_data --clips 40 --seconds 4
    python color_syncnet_train.py --data_root synthetic_data --filelists_dir synthetic_data/filelists \\
        --checkpoint_dir checkpoints/synth_expert

Writes <out_root>/synth/clipNNNNN/{audio.wav,0.jpg,...} and the filelists
train.txt, val.txt, test.txt (val and test hold --held_out clips each).
"""
import argparse
import os

from cli import UserError, run_main

GROUP = "synth"


def write_dataset(out_root, clips, seconds, held_out=2, size=96, seed=0, filelists_dir=None, fps=25,
                  sample_rate=16000, progress=True):
    """Write the clips and filelists; returns {split: [clip names]}."""
    import cv2
    from tqdm import tqdm

    from audio import save_wav
    from synthetic import talking_face_clip

    if clips < 1 + 2 * held_out:
        raise UserError(f"--clips {clips}: need at least {1 + 2 * held_out} clips for --held_out {held_out}")
    names = [f"{GROUP}/clip{i:05d}" for i in range(clips)]
    for i, name in enumerate(tqdm(names, desc="clips", disable=not progress)):
        folder = os.path.join(out_root, name)
        os.makedirs(folder, exist_ok=True)
        wav, frames = talking_face_clip(seconds, size, fps, sample_rate, seed=seed * 100003 + i)
        save_wav(wav, os.path.join(folder, "audio.wav"), sample_rate)
        for f, frame in enumerate(frames):
            cv2.imwrite(os.path.join(folder, f"{f}.jpg"), frame)
    splits = {"val": names[:held_out], "test": names[held_out:2 * held_out], "train": names[2 * held_out:]}
    filelists_dir = filelists_dir or os.path.join(out_root, "filelists")
    os.makedirs(filelists_dir, exist_ok=True)
    for split, members in splits.items():
        with open(os.path.join(filelists_dir, f"{split}.txt"), "w") as f:
            f.writelines(f"{name}\n" for name in members)
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
    args = parser.parse_args(argv)
    if args.seconds * 25 <= 15 or args.size < 16:
        raise UserError("--seconds must give more than 15 frames (> 0.6 s) and --size be at least 16")
    splits = write_dataset(args.out_root, args.clips, args.seconds, args.held_out, args.size, args.seed,
                           args.filelists_dir)
    print(f"wrote {args.clips} clips to {args.out_root} "
          f"({len(splits['train'])} train, {len(splits['val'])} val, {len(splits['test'])} test)")


if __name__ == "__main__":
    run_main(main)
