"""Write filelists/train.txt and val.txt (and test.txt) for the trainers from a preprocessed root.

    python generate_filelists.py --data_root lrs2_preprocessed
    python generate_filelists.py --data_root lrs2_preprocessed --val_fraction 0.05 --test_fraction 0.05 --seed 1
    python generate_filelists.py --data_root my_preprocessed --split_by clip
    python generate_filelists.py --data_root lrs2_preprocessed --lrs2_lists mvlrs_v1
    python generate_filelists.py --data_root lrs2_preprocessed_288x288     # the HD notebook's step

The name and --data_root flag are those of the HD notebook and forks; --preprocessed_root
(preprocess.py's name for the same folder) is accepted as an alias.

Each line is `<group>/<clip>`. Only usable clips are listed: an audio.wav and
more than 3 * syncnet_T = 15 face crops (the trainers' own minimum). The split
is reproducible: the same clips and --seed give the same files. By default
whole groups (LRS2: source videos) go to one side, so no video leaks between
train and val. With --lrs2_lists, LRS2's own train/val/test.txt are used as
they are (text after a space is ignored), keeping the entries that are usable.
"""
import argparse
import os

from cli import UserError, run_main
from fileio import atomic_output
from hparams import SYNCNET_T

SPLITS = ("train", "val", "test")
MIN_FRAMES = 3 * SYNCNET_T  # clips with this many face crops or fewer are too short to train on


def visible_dirs(folder):
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def scan_clips(preprocessed_root):
    """(usable clip names "<group>/<clip>", {reason: count} of the clips left out).

    Usable is what the trainers accept (dataset.inspect_clip).
    """
    from dataset import inspect_clip
    reasons = {"no audio.wav": "no audio.wav", "too few frames": f"{MIN_FRAMES} face crops or fewer"}
    usable, skipped = [], {}
    for group in visible_dirs(preprocessed_root):
        for clip in visible_dirs(os.path.join(preprocessed_root, group)):
            _, problem = inspect_clip(os.path.join(preprocessed_root, group, clip))
            if problem is None:
                usable.append(f"{group}/{clip}")
            else:
                skipped[reasons[problem]] = skipped.get(reasons[problem], 0) + 1
    return usable, skipped


def split_clips(clips, val_fraction, test_fraction, seed, split_by):
    """{split: sorted clip names}: a seeded shuffle of the groups (or clips), cut by the fractions."""
    import numpy as np
    units = sorted({c.split("/")[0] for c in clips}) if split_by == "group" else sorted(clips)
    order = np.random.RandomState(seed).permutation(len(units))
    n_val = int(np.ceil(val_fraction * len(units))) if val_fraction > 0 else 0
    n_test = int(np.ceil(test_fraction * len(units))) if test_fraction > 0 else 0
    if n_val + n_test >= len(units):
        what = "groups" if split_by == "group" else "clips"
        hint = " (try --split_by clip)" if split_by == "group" else ""
        raise UserError(f"{len(units)} usable {what} cannot be split into train, val "
                        f"and test with these fractions{hint}")
    side = {}
    for rank, index in enumerate(order):
        side[units[index]] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
    key = (lambda c: c.split("/")[0]) if split_by == "group" else (lambda c: c)
    lists = {split: [] for split in SPLITS}
    for clip in sorted(clips):
        lists[side[key(clip)]].append(clip)
    return lists


def read_lrs2_lists(folder, usable):
    """{split: entries of LRS2's <split>.txt that are usable}, and the number of entries left out."""
    usable = set(usable)
    lists, dropped = {}, 0
    for split in SPLITS:
        path = os.path.join(folder, f"{split}.txt")
        if not os.path.isfile(path):
            if split == "test":
                continue
            raise UserError(f"{path}: LRS2 list file not found")
        with open(path) as f:
            names = [line.split()[0] for line in f if line.strip()]
        lists[split] = [n for n in names if n in usable]
        dropped += len(names) - len(lists[split])
    return lists, dropped


def write_list(path, names):
    with atomic_output(path, suffix=".txt") as tmp, open(tmp, "w") as f:
        f.writelines(f"{name}\n" for name in names)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", "--preprocessed_root", dest="data_root", required=True,
                        help="output folder of preprocess.py (its --preprocessed_root)")
    parser.add_argument("--output_dir", default="filelists", help="where train.txt, val.txt, test.txt go (default filelists)")
    parser.add_argument("--val_fraction", type=float, default=0.05, help="share of groups (or clips) for val (default 0.05)")
    parser.add_argument("--test_fraction", type=float, default=0.0,
                        help="share for test.txt; 0 (default) writes no test.txt")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    parser.add_argument("--split_by", choices=("group", "clip"), default="group",
                        help="keep whole groups on one side (default) or split clip by clip")
    parser.add_argument("--lrs2_lists", default=None,
                        help="folder with LRS2's train.txt, val.txt (and test.txt): use its split instead")
    args = parser.parse_args(argv)

    if not os.path.isdir(args.data_root):
        raise UserError(f"{args.data_root}: preprocessed root not found")
    for name in ("val_fraction", "test_fraction"):
        if not 0 <= getattr(args, name) < 1:
            raise UserError(f"--{name} must be in [0, 1), got {getattr(args, name)}")
    usable, skipped = scan_clips(args.data_root)
    if not usable:
        raise UserError(f"{args.data_root}: no usable clips (need audio.wav and more than "
                        f"{MIN_FRAMES} face crops as <group>/<clip>/<i>.jpg)")
    if args.lrs2_lists:
        lists, dropped = read_lrs2_lists(args.lrs2_lists, usable)
    else:
        lists, dropped = split_clips(usable, args.val_fraction, args.test_fraction, args.seed, args.split_by), 0
        if args.test_fraction == 0:
            del lists["test"]

    os.makedirs(args.output_dir, exist_ok=True)
    for split, names in lists.items():
        write_list(os.path.join(args.output_dir, f"{split}.txt"), names)
    counts = ", ".join(f"{split} {len(names)}" for split, names in lists.items())
    left_out = "; ".join(f"{n} with {reason}" for reason, n in sorted(skipped.items())) or "none"
    print(f"wrote {counts} clips to {args.output_dir}/ ({len(usable)} usable; left out: {left_out})")
    if dropped:
        print(f"{dropped} entries of the LRS2 lists are not usable clips of {args.data_root} and were left out")
    return lists


if __name__ == "__main__":
    run_main(main)
