"""Learning run: train the lip-sync expert on synthetic talking faces, report off-sync accuracy.

    python benchmarks/learn_syncnet.py          # 300 steps + 50 at a lower lr: ~15 min on 2 idle CPU cores
    python benchmarks/learn_syncnet.py --steps 400 --out benchmarks/out/learn_syncnet2

    # HD: a 288 expert against a 96 one on the same 288 clips, same samples, three seeds each (~75 min)
    HP=syncnet_batch_size=16,syncnet_eval_interval=30,syncnet_eval_steps=4,syncnet_checkpoint_interval=150
    for seed in 0 1 2; do for size in 96 288; do
      python benchmarks/learn_syncnet.py --out benchmarks/out/learn_hd --data_size 288 --img_size $size \
          --seed $seed --steps 150 --finetune_steps 30 --hparams "$HP,syncnet_lr=2e-4"
    done; done
    python benchmarks/learn_syncnet.py --out benchmarks/out/learn_hd --summary   # mean +- sd, curves.png

Generates clips with make_synthetic_dataset.py, trains with color_syncnet_train.py
(the real trainer, through its main()), then scores the final checkpoint on the
held-out test clips (never seen in training or eval): for every start frame one
in-sync pair and one off-sync pair (the window of another random frame of the
same clip, the trainer's own negatives), balanced; a pair counts as "in sync"
when the cosine of the embeddings is > 0.5. Prints the accuracy and wall time.

With --img_size 288 the expert is the HD one; --data_size sets the size the clips are
written at (the 96 expert reads 288 clips resized, so both see the same samples).
--seed seeds the network's initialisation and the data order (hparams seed). Each run
appends a row to <out>/results.csv and keeps its training log as
<out>/runs/<img_size>_seed<N>.csv; --summary prints mean +- sd per size and draws
<out>/curves.png (train accuracy and in-training eval accuracy against samples seen).
"""
import argparse
import csv
import os
import random
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def held_out_accuracy(checkpoint_path, data_root, filelists_dir, hp, seed=0):
    """(accuracy, number of pairs) of the expert on balanced in/off-sync pairs of the test clips."""
    import torch

    from checkpoints import load_sized_model
    from dataset import TalkingFaceDataset, load_split, window_paths
    from models import SyncNet_color

    model, _ = load_sized_model(SyncNet_color, checkpoint_path)
    model.eval()
    hp = hp.replace(img_size=model.img_size)
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
    parser.add_argument("--data_size", type=int, default=96, help="face crop size the clips are written at")
    parser.add_argument("--img_size", type=int, default=96, choices=(96, 288), help="the expert's size")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed the initialisation and the data order (default: unseeded, as before)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--hparams", default="syncnet_batch_size=32,syncnet_lr=2e-4,syncnet_eval_interval=50,"
                        "syncnet_eval_steps=2,syncnet_checkpoint_interval=50")
    parser.add_argument("--finetune_steps", type=int, default=50,
                        help="then this many steps at --finetune_lr (settles BatchNorm's running stats)")
    parser.add_argument("--finetune_lr", type=float, default=5e-5)
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--summary", action="store_true",
                        help="only gather <out>/results.csv: mean +- sd per size, curves.png")
    args = parser.parse_args(argv)
    if args.summary:
        return summarize(args.out)

    import torch

    import color_syncnet_train
    from checkpoints import latest_checkpoint
    from hparams import parse_overrides
    from make_synthetic_dataset import write_dataset

    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    hparams = f"{args.hparams},img_size={args.img_size}"
    if args.seed is not None:
        hparams += f",seed={args.seed}"
        torch.manual_seed(args.seed)
    run_name = f"{args.img_size}" + ("" if args.seed is None else f"_seed{args.seed}")
    data_root = os.path.join(args.out, "data")
    filelists = os.path.join(data_root, "filelists")
    checkpoint_dir = os.path.join(args.out, "checkpoints" if args.seed is None and args.img_size == 96
                                  else f"checkpoints_{run_name}")
    t0 = time.time()
    if not os.path.isfile(os.path.join(filelists, "test.txt")):
        write_dataset(data_root, args.clips, args.seconds, held_out=4, size=args.data_size, seed=0)
    t1 = time.time()
    for max_steps, run_hparams in ((args.steps, hparams),
                                   (args.steps + args.finetune_steps, f"{hparams},syncnet_lr={args.finetune_lr}")):
        color_syncnet_train.main(["--data_root", data_root, "--filelists_dir", filelists,
                                  "--checkpoint_dir", checkpoint_dir, "--resume", "--device", "cpu",
                                  "--max_steps", str(max_steps), "--num_workers", str(args.num_workers),
                                  "--hparams", run_hparams])
    t2 = time.time()
    hp = parse_overrides(hparams)
    accuracy, pairs = held_out_accuracy(latest_checkpoint(checkpoint_dir), data_root, filelists, hp)
    samples = (args.steps + args.finetune_steps) * hp.syncnet_batch_size
    print(f"synthetic data: {args.clips} clips x {args.seconds} s at {args.data_size}x{args.data_size} "
          f"({t1 - t0:.0f} s to write)")
    print(f"expert {args.img_size}x{args.img_size} training: {args.steps} steps with --hparams \"{hparams}\", then "
          f"{args.finetune_steps} at syncnet_lr={args.finetune_lr} ({samples} samples): {t2 - t1:.0f} s wall")
    print(f"held-out off-sync accuracy: {100 * accuracy:.1f}% on {pairs} balanced pairs "
          f"(total wall time {time.time() - t0:.0f} s)")
    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    shutil.copyfile(os.path.join(checkpoint_dir, "log.csv"), os.path.join(args.out, "runs", f"{run_name}.csv"))
    results = os.path.join(args.out, "results.csv")
    new = not os.path.isfile(results)
    with open(results, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(["img_size", "seed", "steps", "samples", "accuracy", "pairs", "train_seconds"])
        writer.writerow([args.img_size, "" if args.seed is None else args.seed, args.steps + args.finetune_steps,
                         samples, f"{accuracy:.4f}", pairs, f"{t2 - t1:.0f}"])


def summarize(out):
    """Print mean +- sd of the held-out accuracy per expert size and draw the training curves."""
    results = os.path.join(out, "results.csv")
    if not os.path.isfile(results):
        sys.exit(f"error: {results}: no runs yet (run without --summary first)")
    with open(results, newline="") as f:
        rows = list(csv.DictReader(f))
    by_size = {}
    for row in rows:
        by_size.setdefault(int(row["img_size"]), []).append(row)
    for size, runs in sorted(by_size.items()):
        accuracies = [100 * float(r["accuracy"]) for r in runs]
        seconds = [float(r["train_seconds"]) for r in runs]
        print(f"expert {size}x{size}: held-out off-sync accuracy {statistics.mean(accuracies):.1f} +- "
              f"{statistics.stdev(accuracies) if len(runs) > 1 else 0:.1f} % over {len(runs)} seeds "
              f"({', '.join(f'{a:.1f}' for a in accuracies)}), {runs[0]['samples']} samples each, "
              f"{statistics.mean(seconds) / 60:.0f} min of training per seed")
    batch = int(rows[0]["samples"]) // int(rows[0]["steps"])
    draw_curves(out, sorted(by_size), batch)


def draw_curves(out, sizes, batch):
    """curves.png: train accuracy (smoothed) and eval accuracy against samples, one colour per size."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = {96: "tab:blue", 288: "tab:red"}
    for name in sorted(os.listdir(os.path.join(out, "runs"))):
        size = int(name.split("_")[0].split(".")[0])
        if size not in sizes:
            continue
        with open(os.path.join(out, "runs", name), newline="") as f:
            rows = list(csv.DictReader(f))
        for axis, split in zip(axes, ("train", "eval")):
            points = [(int(r["step"]), float(r["value"])) for r in rows
                      if r["phase"] == split and r["name"] == "accuracy"]
            if not points:
                continue
            steps, values = zip(*points)
            if split == "train":  # a running mean over 20 steps
                values = [statistics.mean(values[max(0, i - 19):i + 1]) for i in range(len(values))]
            axis.plot(steps, values, color=colours.get(size, "k"), alpha=0.8,
                      label=f"{size}x{size} {name.split('_', 1)[-1].removesuffix('.csv')}")
    for axis, title in zip(axes, ("train accuracy (running mean of 20 steps)", "eval accuracy (val clips)")):
        axis.set_xlabel(f"step ({batch} samples each)")
        axis.set_title(title)
        axis.set_ylim(0.4, 1.0)
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "curves.png"), dpi=100)
    print(f"curves: {os.path.join(out, 'curves.png')}")


if __name__ == "__main__":
    main()
