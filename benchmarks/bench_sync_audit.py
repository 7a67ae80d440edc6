"""Does sync_audit.py find known sync errors? Shifted synthetic clips, a trained expert, the report.

    python benchmarks/learn_syncnet.py                      # trains an expert (~15 min on 2 CPU cores)
    python benchmarks/bench_sync_audit.py --expert "$(ls benchmarks/out/learn_syncnet/checkpoints/*.pth | tail -1)"
    python benchmarks/bench_sync_audit.py --expert checkpoints/lipsync_expert.pth --clips 100 --max_shift 8

Writes --clips synthetic clips whose audio is shifted by a known whole number of
frames in [-max_shift, max_shift] (make_synthetic_dataset.py --max_audio_shift,
other seeds than the expert's training clips), runs sync_audit.py through its
main() and prints how many offsets equal the known ones, how many are within a
frame, and clips/s (expert and reading included).
"""
import argparse
import csv
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--expert", required=True, help="SyncNet_color checkpoint")
    p.add_argument("--clips", type=int, default=40)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--max_shift", type=int, default=6)
    p.add_argument("--seed", type=int, default=11, help="data seed (the learning run uses 0)")
    p.add_argument("--out", default="benchmarks/out/sync_audit")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)

    import sync_audit
    from make_synthetic_dataset import write_dataset
    data = os.path.join(args.out, f"shifted_seed{args.seed}")
    if not os.path.isfile(os.path.join(data, "audio_shifts.csv")):
        write_dataset(data, args.clips, args.seconds, held_out=0, seed=args.seed, max_audio_shift=args.max_shift)
    with open(os.path.join(data, "audio_shifts.csv")) as f:
        expected = {r["clip"]: int(r["expected_offset"]) for r in csv.DictReader(f)}
    report = os.path.join(args.out, "report.csv")
    start = time.perf_counter()
    sync_audit.main(["--data_root", data, "--checkpoint_path", args.expert, "--out", report,
                     "--vshift", "15", "--device", args.device, "--quiet"])
    seconds = time.perf_counter() - start
    with open(report) as f:
        rows = [r for r in csv.DictReader(f) if not r["error"]]
    exact = sum(int(r["offset"]) == expected[r["clip"]] for r in rows)
    near = sum(abs(int(r["offset"]) - expected[r["clip"]]) <= 1 for r in rows)
    print(f"{len(rows)} clips of {args.seconds:g} s, audio shifted by -{args.max_shift}..{args.max_shift} frames")
    print(f"offset recovered exactly: {exact}/{len(rows)}; within one frame: {near}/{len(rows)}")
    print(f"{len(rows) / seconds:.2f} clips/s ({seconds:.1f} s, model loading included)")


if __name__ == "__main__":
    main()
