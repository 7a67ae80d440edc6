"""Learning run at 288: a 288 generator trained against a 96 expert and against a 288 expert.

    python benchmarks/learn_hd_generator.py          # after learn_syncnet.py's HD runs (--out benchmarks/out/learn_hd)
    python benchmarks/learn_hd_generator.py --steps 200 --experts 96=PATH 288=PATH

wav2lip_train.py through its main(), at --hparams img_size=288, on the 288 synthetic
clips the experts were trained on, once per expert: the published-size (96) expert,
whose input is then the generated lower halves downscaled to 48x96, and the 288
expert, used as it is. Same seed, data order and schedule for both. Writes
<out>/<label>/ (checkpoints, log.csv), <out>/learning.png (training L1, training
sync loss, eval sync loss with the 0.75 switch threshold) and prints per expert the
seconds per step, the L1 and eval sync loss at the start and the end, and the step
at which the sync weight was switched on (or that it was not within the run).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def latest_expert(folder):
    from checkpoints import latest_checkpoint
    path = latest_checkpoint(folder) if os.path.isdir(folder) else None
    if path is None:
        sys.exit(f"error: {folder}: no expert checkpoint (run learn_syncnet.py's HD runs first, or pass --experts)")
    return path


def mean_of(rows, phase, name, first=None, last=None):
    values = [v for s, p, n, v in rows if p == phase and n == name]
    values = values[:first] if first else values[-last:] if last else values
    return float(np.mean(values)) if values else float("nan")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/out/learn_hd/generator")
    p.add_argument("--data_root", default="benchmarks/out/learn_hd/data", help="the experts' 288 synthetic clips")
    p.add_argument("--experts", nargs="+", default=None, metavar="LABEL=PATH",
                   help="experts to train against (default: 96 and 288, seed 0, of benchmarks/out/learn_hd)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--hparams", default="batch_size=2,initial_learning_rate=5e-4,eval_interval=15,"
                   "checkpoint_interval=1000,eval_steps=8,seed=0",
                   help="the schedule: everything else is the published recipe")
    p.add_argument("--num_workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = p.parse_args(argv)

    import torch

    import wav2lip_train
    from hparams import hparams as hp
    from learn_wav2lip import plot, read_log, switch_step

    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    if args.experts is None:
        root = os.path.dirname(os.path.normpath(args.data_root))
        experts = {f"{size} expert": latest_expert(os.path.join(root, f"checkpoints_{size}_seed0")) for size in (96, 288)}
    else:
        experts = dict(item.split("=", 1) for item in args.experts)
    filelists = os.path.join(args.data_root, "filelists")
    curves, switches, lines = {}, {}, []
    for label, expert in experts.items():
        folder = os.path.join(args.out, label.replace(" ", "_"))
        torch.manual_seed(0)  # the same initial generator for every expert
        start = time.time()
        wav2lip_train.main(["--data_root", args.data_root, "--filelists_dir", filelists, "--device", "cpu",
                            "--syncnet_checkpoint_path", expert, "--num_workers", str(args.num_workers),
                            "--checkpoint_dir", folder, "--resume", "--max_steps", str(args.steps),
                            "--hparams", f"{args.hparams},img_size=288"])
        seconds = time.time() - start
        rows = read_log(os.path.join(folder, "log.csv"))
        curves[label], switches[label] = rows, switch_step(rows, hp.syncnet_switch_threshold)
        evals = [(s, v) for s, ph, n, v in rows if ph == "eval" and n == "sync"]
        lines.append(f"{label}: {args.steps} steps ({seconds / args.steps:.1f} s/step wall); training L1 "
                     f"{mean_of(rows, 'train', 'l1', first=10):.4f} (first 10 steps) -> "
                     f"{mean_of(rows, 'train', 'l1', last=10):.4f} (last 10); eval sync loss "
                     + ", ".join(f"{v:.3f}@{s}" for s, v in evals) + "; sync weight switched on "
                     + (f"at step {switches[label]}" if switches[label] else f"not within {args.steps} steps"))
    plot(curves, switches, os.path.join(args.out, "learning.png"))
    print("\n".join(lines))
    print(f"curves: {os.path.join(args.out, 'learning.png')}")


if __name__ == "__main__":
    main()
