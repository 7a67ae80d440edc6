"""Learning run: train the lip-sync expert on synthetic talking faces, report off-sync accuracy.

    python benchmarks/learn_syncnet.py          # 300 steps + 50 at a lower lr: ~15 min on 2 idle CPU cores
    python benchmarks/learn_syncnet.py --steps 400 --out benchmarks/out/learn_syncnet2

Generates clips with make_synthetic_dataset.py, trains with color_syncnet_train.py
(the real trainer, through its main()), then scores the final checkpoint on the
held-out test clips (never seen in training or eval): for every start frame one
in-sync pair and one off-sync pair (the window of another random frame of the
same clip, the trainer's own negatives), balanced; a pair counts as "in sync"
when the cosine of the embeddings is > 0.5. Prints the accuracy and wall time.
"""
import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def held_out_accuracy(checkpoint_path, data_root, filelists_dir, hp, seed=0):
    """(accuracy, number of pairs) of the expert on balanced in/off-sync pairs of the test clips."""
    import torch

    from checkpoints import load_model
    from dataset import TalkingFaceDataset, load_split, window_paths
    from models import SyncNet_color

    model = SyncNet_color()
    load_model(model, checkpoint_path)
    model.eval()
    data = TalkingFaceDataset(load_split(data_root, "test", filelists_dir), hp, "syncnet", source="test.txt")
    rng = random.Random(seed)
    xs, mels, ys = [], [], []
    for clip in data.clips:
        starts = [f for f in data.frame_lists[clip] if window_paths(clip, f, data.frames[clip])]
        for start in starts:
            wrong = rng.choice([f for f in starts if f != start])
            pair = [data.make_sample(clip, start, wrong, label) for label in (True, False)]
            if any(isinstance(sample, str) for sample in pair):
                continue  # mel window past the end of the audio
            for (x, mel, y) in pair:
                xs.append(x)
                mels.append(mel)
                ys.append(float(y))
    correct = 0
    with torch.no_grad():
        for i in range(0, len(xs), 64):
            a, v = model(torch.stack(mels[i:i + 64]), torch.stack(xs[i:i + 64]))
            in_sync = torch.nn.functional.cosine_similarity(a, v) > 0.5
            correct += (in_sync.float() == torch.tensor(ys[i:i + 64])).sum().item()
    return correct / len(ys), len(ys)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/out/learn_syncnet", help="data and checkpoints go here")
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--hparams", default="syncnet_batch_size=32,syncnet_lr=2e-4,syncnet_eval_interval=50,"
                        "syncnet_eval_steps=2,syncnet_checkpoint_interval=50")
    parser.add_argument("--finetune_steps", type=int, default=50,
                        help="then this many steps at --finetune_lr (settles BatchNorm's running stats)")
    parser.add_argument("--finetune_lr", type=float, default=5e-5)
    parser.add_argument("--num_workers", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    import color_syncnet_train
    from checkpoints import latest_checkpoint
    from hparams import parse_overrides
    from make_synthetic_dataset import write_dataset

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    data_root = os.path.join(args.out, "data")
    filelists = os.path.join(data_root, "filelists")
    checkpoint_dir = os.path.join(args.out, "checkpoints")
    t0 = time.time()
    if not os.path.isfile(os.path.join(filelists, "test.txt")):
        write_dataset(data_root, args.clips, args.seconds, held_out=4, seed=0)
    t1 = time.time()
    for max_steps, hparams in ((args.steps, args.hparams),
                               (args.steps + args.finetune_steps, f"{args.hparams},syncnet_lr={args.finetune_lr}")):
        color_syncnet_train.main(["--data_root", data_root, "--filelists_dir", filelists,
                                  "--checkpoint_dir", checkpoint_dir, "--resume", "--device", "cpu",
                                  "--max_steps", str(max_steps), "--num_workers", str(args.num_workers),
                                  "--hparams", hparams])
    t2 = time.time()
    accuracy, pairs = held_out_accuracy(latest_checkpoint(checkpoint_dir), data_root, filelists,
                                        parse_overrides(args.hparams))
    print(f"synthetic data: {args.clips} clips x {args.seconds} s ({t1 - t0:.0f} s to write)")
    print(f"expert training: {args.steps} steps with --hparams \"{args.hparams}\", then {args.finetune_steps} "
          f"at syncnet_lr={args.finetune_lr}: {t2 - t1:.0f} s wall")
    print(f"held-out off-sync accuracy: {100 * accuracy:.1f}% on {pairs} balanced pairs "
          f"(total wall time {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
