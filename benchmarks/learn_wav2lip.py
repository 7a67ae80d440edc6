"""Learning run: does wav2lip_train.py give a generator whose mouth follows the audio?

    python benchmarks/learn_wav2lip.py                       # trains the expert first (learn_syncnet.py)
    python benchmarks/learn_wav2lip.py --expert "$(ls benchmarks/out/learn_syncnet/checkpoints/*.pth | tail -1)"
    python benchmarks/learn_wav2lip.py --expert ... --seeds 0 1 2 --steps 600 --hq_steps 100

On synthetic talking faces (make_synthetic_dataset.py: the mouth opening of every
frame is the loudness of its audio, so it is known), for each seed:

1. wav2lip_train.py through its main() (optionally hq_wav2lip_train.py on top),
   with the published recipe except the schedule (--hparams, printed);
2. the held-out test clips, which neither the expert nor the generator saw, are
   dubbed with inference.py from the final checkpoint: the video of test clip i
   with the audio of test clip i+1, so the input mouth moves to other speech;
3. a mouth-region measure (the share of dark lip pixels under the nose, which
   grows with the drawn mouth's area) is correlated over all frames with the true
   opening of the new audio, next to two baselines on the same frames: the
   ground truth (clip i+1's own frames) and the input copied unchanged (clip i's
   frames: lip motion, but for other speech). Correlations are given at lag 0
   and at the best lag within +-3 frames (the published inference.py feeds frame
   i the mel window starting at frame i, one frame later than training does);
4. the expert's in-sync probability (cosine of its embeddings, as in its loss)
   for 5-frame windows with their own audio and with audio shifted by 5-15 frames.

Writes into --out: learning.csv (every logged loss of every seed and stage),
learning.png (the curves, the sync-weight switch marked), heldout.csv (the
measures per seed), and prints mean +- sd over the seeds with the CPU time taken. Each seed's figures
are kept in seed<N>/heldout.csv, so seeds can run as parallel processes
(--seeds 0 --threads 1, --seeds 1 --threads 1, ...) and a last invocation with all
the seeds only gathers them.
"""
import argparse
import csv
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MAX_LAG = 3
SHIFTS = range(5, 16)  # audio shifts (frames) counted as out of sync for the expert's probability


def mouth_measure(frames):
    """Per frame, the share of dark lip-coloured pixels in the mouth region of a 96x96 face.

    synthetic.draw_face fills the mouth with BGR (40, 30, 150) on skin (120, 160, 220)
    (+-25 tint): green below 100 is lip, whatever the tint; the region (rows
    56..85, columns 24..71) lies inside the face for every generated face box.
    """
    region = np.asarray(frames)[:, 56:86, 24:72, 1].astype(np.float32)
    return (region < 100).mean(axis=(1, 2))


def lagged_correlations(measure, opening, max_lag=MAX_LAG):
    """{lag: Pearson r of measure[t] with opening[t + lag]}, pooled over the clips.

    measure and opening are lists (one array per clip, same lengths).
    """
    out = {}
    for lag in range(-max_lag, max_lag + 1):
        xs, ys = [], []
        for m, o in zip(measure, opening):
            n = min(len(m), len(o))
            idx = np.arange(max(0, -lag), min(n, n - lag))
            xs.append(m[idx])
            ys.append(o[idx + lag])
        x, y = np.concatenate(xs), np.concatenate(ys)
        out[lag] = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else 0.0
    return out


def true_openings(clip_index, seconds, data_seed, hp):
    """The opening drawn in every frame of clip `clip_index` (make_synthetic_dataset's recipe)."""
    from synthetic import mouth_openings, speech_like_audio
    wav = speech_like_audio(seconds, hp.sample_rate, data_seed * 100003 + clip_index)
    return mouth_openings(wav, hp.sample_rate, hp.fps, int(seconds * hp.fps))


def sync_probabilities(expert, frames, wav_path, hp):
    """(mean in-sync probability with the window's own audio, with audio shifted by SHIFTS frames)."""
    import torch

    import audio
    from sync_audit import embed, expert_inputs
    faces = dict(enumerate(frames))
    mel = audio.melspectrogram(audio.load_wav(wav_path, hp.sample_rate), hp).T
    starts, x, audio_frames, y = expert_inputs(faces, mel, hp)
    with torch.no_grad():
        v = embed(expert.embed_faces, x, 64, torch.device("cpu"))
        a = embed(expert.embed_audio, y, 64, torch.device("cpu"))
    cosine = v @ a.T
    column = {f: j for j, f in enumerate(audio_frames)}

    def mean_at(shifts):
        values = [cosine[i, column[s + k]] for i, s in enumerate(starts) for k in shifts if s + k in column]
        return float(np.mean(values))
    return mean_at([0]), mean_at([sign * k for k in SHIFTS for sign in (-1, 1)])


def read_clip_frames(clip):
    import cv2
    ids = sorted(int(name[:-4]) for name in os.listdir(clip) if name.endswith(".jpg"))
    return [cv2.imread(os.path.join(clip, f"{i}.jpg")) for i in ids]


def write_face_video(frames, path, fps):
    from videoio import VideoWriter
    h, w = frames[0].shape[:2]
    with VideoWriter(path, fps, w, h, crf=10) as video:
        for frame in frames:
            video.write(frame)


def dub_held_out(checkpoint, data_root, test_clips, work):
    """inference.py on every (video of clip i, audio of clip i+1): {pair: generated frames}."""
    import inference
    from hparams import hparams as hp
    from videoio import VideoReader
    out = {}
    for i, face_clip in enumerate(test_clips):
        audio_clip = test_clips[(i + 1) % len(test_clips)]
        frames = read_clip_frames(os.path.join(data_root, face_clip))
        face_video = os.path.join(work, f"face{i}.mp4")
        write_face_video(frames, face_video, hp.fps)
        size = frames[0].shape[0]
        result = os.path.join(work, f"dubbed{i}.mp4")
        inference.main(["--checkpoint_path", checkpoint, "--face", face_video,
                        "--audio", os.path.join(data_root, audio_clip, "audio.wav"),
                        "--outfile", result, "--box", "0", str(size), "0", str(size),
                        "--device", "cpu", "--quiet", "--no_box_cache"])
        with VideoReader(result) as video:
            out[(face_clip, audio_clip)] = list(video)
    return out


def held_out_measures(checkpoint, expert_path, data_root, test_clips, seconds, data_seed):
    """The held-out figures of one generator checkpoint (a dict of floats)."""
    from checkpoints import load_model
    from hparams import hparams as hp
    from models import SyncNet_color
    expert = SyncNet_color()
    load_model(expert, expert_path)
    expert.eval()
    index = {clip: int(clip[-5:]) for clip in test_clips}
    with tempfile.TemporaryDirectory() as work:
        dubbed = dub_held_out(checkpoint, data_root, test_clips, work)
    kinds = {"generated": [], "ground_truth": [], "copy": []}
    openings, probabilities = [], {k: [] for k in kinds}
    for (face_clip, audio_clip), generated in dubbed.items():
        truth = read_clip_frames(os.path.join(data_root, audio_clip))
        copy = read_clip_frames(os.path.join(data_root, face_clip))
        n = min(len(generated), len(truth), len(copy))
        openings.append(true_openings(index[audio_clip], seconds, data_seed, hp)[:n])
        wav = os.path.join(data_root, audio_clip, "audio.wav")
        for kind, frames in (("generated", generated), ("ground_truth", truth), ("copy", copy)):
            kinds[kind].append(mouth_measure(frames[:n]))
            probabilities[kind].append(sync_probabilities(expert, frames[:n], wav, hp))
    row = {}
    for kind, measures in kinds.items():
        lags = lagged_correlations(measures, openings)
        best = max(lags, key=lambda k: lags[k])
        row[f"{kind}_corr"] = lags[0]
        row[f"{kind}_corr_best"] = lags[best]
        row[f"{kind}_best_lag"] = best
        own, shifted = np.mean(probabilities[kind], axis=0)
        row[f"{kind}_p_sync_own"] = own
        row[f"{kind}_p_sync_shifted"] = shifted
    row["frames"] = int(sum(len(o) for o in openings))
    return row


def read_log(path):
    with open(path) as f:
        return [(int(r["step"]), r["phase"], r["name"], float(r["value"])) for r in csv.DictReader(f)]


def write_rows(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def parse_number(text):
    """A CSV cell back to int, float or None (a switch that never happened is written empty)."""
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)


def switch_step(rows, threshold):
    """The first step whose eval sync loss is below `threshold` (the trainer raises syncnet_wt there)."""
    steps = [step for step, phase, name, value in rows if phase == "eval" and name == "sync" and value < threshold]
    return min(steps) if steps else None


def plot(curves, switches, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    panels = (("train", "l1", "training L1 (mean of 25 steps)"), ("train", "sync", "training sync loss (mean of 25)"),
              ("eval", "sync", "eval sync loss (threshold 0.75 dashed)"))
    for ax, (phase, name, title) in zip(axes, panels):
        for seed, rows in curves.items():
            series = [(s, v) for s, p, n, v in rows if p == phase and n == name]
            if not series:
                continue
            steps, values = map(np.asarray, zip(*series))
            if phase == "train":
                kernel = np.ones(min(25, len(values))) / min(25, len(values))
                values = np.convolve(values, kernel, mode="valid")
                steps = steps[len(steps) - len(values):]
            line, = ax.plot(steps, values, marker="o" if phase == "eval" else None, ms=3, label=f"seed {seed}" if isinstance(seed, int) else seed)
            if switches.get(seed):
                ax.axvline(switches[seed], color=line.get_color(), ls=":", lw=1)
        if phase == "eval":
            ax.axhline(0.75, color="grey", ls="--", lw=1)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[-1].set_xlabel("step (dotted: sync weight switched on)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cpu_seconds():
    usage = os.times()
    return usage.user + usage.system + usage.children_user + usage.children_system


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="benchmarks/out/learn_wav2lip")
    p.add_argument("--expert", default=None,
                   help="SyncNet_color checkpoint trained on the same synthetic data (default: run learn_syncnet.py)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=600, help="wav2lip_train.py steps per seed")
    p.add_argument("--hq_steps", type=int, default=0, help="then this many hq_wav2lip_train.py steps on top")
    p.add_argument("--hparams", default="batch_size=2,initial_learning_rate=5e-4,eval_interval=100,"
                   "checkpoint_interval=100,eval_steps=10,hq_eval_steps=10,disc_initial_learning_rate=5e-4",
                   help="the schedule: everything else is the published recipe")
    p.add_argument("--data_root", default=None,
                   help="the synthetic clips the expert was trained on (default: write them, seed 0, under --out)")
    p.add_argument("--clips", type=int, default=48)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--num_workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: all cores; 1 when running seeds as parallel processes)")
    args = p.parse_args(argv)

    import torch

    import hq_wav2lip_train
    import wav2lip_train
    from checkpoints import latest_checkpoint
    from hparams import hparams as hp
    from make_synthetic_dataset import write_dataset

    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    t0, cpu0 = time.time(), cpu_seconds()
    if args.expert is None:
        import learn_syncnet
        learn_syncnet.main(["--out", os.path.join(args.out, "expert"), "--clips", str(args.clips),
                            "--seconds", str(args.seconds)])
        data_root = os.path.join(args.out, "expert", "data")
        args.expert = latest_checkpoint(os.path.join(args.out, "expert", "checkpoints"))
    else:
        data_root = args.data_root or os.path.join(args.out, "data")  # learn_syncnet.py's clips (seed 0)
        if not os.path.isfile(os.path.join(data_root, "filelists", "test.txt")):
            write_dataset(data_root, args.clips, args.seconds, held_out=4, seed=0)
    filelists = os.path.join(data_root, "filelists")
    with open(os.path.join(filelists, "test.txt")) as f:
        test_clips = [line.strip() for line in f if line.strip()]
    t_expert = time.time() - t0

    curves, switches, rows = {}, {}, []
    for seed in args.seeds:
        folder = os.path.join(args.out, f"seed{seed}")
        done = os.path.join(folder, "heldout.csv")
        if os.path.isfile(done):  # measured by an earlier (or a parallel) invocation
            with open(done) as f:
                row = next(csv.DictReader(f))
            if int(row["steps"]) == args.steps + args.hq_steps:
                rows.append({k: parse_number(v) for k, v in row.items()})
                curves[seed] = read_log(os.path.join(folder, "curves.csv"))
                switches[seed] = rows[-1]["switch_step"]
                continue
        hparams = f"{args.hparams},seed={seed}"
        common = ["--data_root", data_root, "--filelists_dir", filelists, "--device", "cpu",
                  "--syncnet_checkpoint_path", args.expert, "--num_workers", str(args.num_workers)]
        t_seed, cpu_seed = time.time(), cpu_seconds()
        wav2lip_train.main(common + ["--checkpoint_dir", os.path.join(folder, "wav2lip"), "--resume",
                                     "--max_steps", str(args.steps), "--hparams", hparams])
        log = [(s, ph, n, v) for s, ph, n, v in read_log(os.path.join(folder, "wav2lip", "log.csv"))]
        final = latest_checkpoint(os.path.join(folder, "wav2lip"))
        if args.hq_steps:
            hq_dir = os.path.join(folder, "hq")
            resume = ["--resume"] if latest_checkpoint(hq_dir) else ["--checkpoint_path", final]
            hq_wav2lip_train.main(common + ["--checkpoint_dir", hq_dir, *resume,
                                            "--max_steps", str(args.steps + args.hq_steps), "--hparams", hparams])
            log += [(s, ph, f"hq_{n}" if n not in ("l1", "sync") else n, v)
                    for s, ph, n, v in read_log(os.path.join(hq_dir, "log.csv")) if s > args.steps]
            final = latest_checkpoint(hq_dir)
        curves[seed] = log
        switches[seed] = switch_step(log, hp.syncnet_switch_threshold)
        train_seconds = time.time() - t_seed
        measures = held_out_measures(final, args.expert, data_root, test_clips, args.seconds, data_seed=0)
        rows.append({"seed": seed, "steps": args.steps + args.hq_steps, "switch_step": switches[seed],
                     "train_seconds": round(train_seconds), "cpu_seconds": round(cpu_seconds() - cpu_seed),
                     **measures})
        write_rows(os.path.join(folder, "curves.csv"), ["step", "phase", "name", "value"], log)
        write_rows(done, list(rows[-1]), [list(rows[-1].values())])
        print(f"seed {seed}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in rows[-1].items()), flush=True)

    write_rows(os.path.join(args.out, "learning.csv"), ["seed", "step", "phase", "name", "value"],
               [[seed, *r] for seed, log in curves.items() for r in log])
    write_rows(os.path.join(args.out, "heldout.csv"), list(rows[0]), [list(r.values()) for r in rows])
    plot(curves, switches, os.path.join(args.out, "learning.png"))

    def stat(key):
        values = np.array([r[key] for r in rows if r[key] is not None], float)
        if not len(values):
            return "never"
        return f"{values.mean():.3f} +- {values.std(ddof=1) if len(values) > 1 else 0:.3f}"
    print(f"\n{len(rows)} seeds, {args.steps} wav2lip_train.py steps" +
          (f" + {args.hq_steps} hq_wav2lip_train.py steps" if args.hq_steps else "") +
          f", --hparams \"{args.hparams}\"")
    print(f"sync weight switched on at step: {[r['switch_step'] for r in rows]}")
    print(f"held-out mouth correlation, lag 0 / best lag ({rows[0]['frames']} frames per seed):")
    for kind in ("generated", "ground_truth", "copy"):
        print(f"  {kind:13s} {stat(kind + '_corr')} / {stat(kind + '_corr_best')} "
              f"(lags {[r[kind + '_best_lag'] for r in rows]})")
    print("expert's in-sync probability, own audio vs audio shifted 5-15 frames:")
    for kind in ("generated", "ground_truth", "copy"):
        print(f"  {kind:13s} {stat(kind + '_p_sync_own')} vs {stat(kind + '_p_sync_shifted')}")
    wall, cpu = time.time() - t0, cpu_seconds() - cpu0
    per_seed = [r["cpu_seconds"] / 60 for r in rows]
    print(f"this invocation: wall {wall / 60:.1f} min (expert/data {t_expert / 60:.1f} min), CPU {cpu / 60:.1f} min; "
          f"CPU per seed (training + held-out): {', '.join(f'{m:.1f}' for m in per_seed)} min "
          f"({sum(per_seed) / max(1, os.cpu_count()):.1f} min of {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
