"""Audit a preprocessed dataset's audio-visual sync with a trained expert, before training on it.

    python sync_audit.py --data_root lrs2_preprocessed --checkpoint_path checkpoints/lipsync_expert.pth
    python sync_audit.py --data_root lrs2_preprocessed_288x288 --checkpoint_path savedmodel/expert/checkpoint_stepN.pth
    python sync_audit.py --data_root my_preprocessed --checkpoint_path checkpoints/lipsync_expert.pth \\
        --filelist filelists/train.txt filelists/val.txt --out audit.csv \\
        --write_filelists filelists_audited --max_abs_offset 1 --min_confidence 0.1
    python wav2lip_train.py --data_root my_preprocessed --filelists_dir filelists_audited ...

For each clip (every <group>/<clip> folder of --data_root, or the clips of the
--filelist files): the expert's distance between each 5-frame window of face
crops and the mel window of the frame `shift` frames later, for shifts
-vshift..vshift, averaged over the clip (pairs inside the clip only); the
offset is the best shift with syncnet_python's sign (an audio track that lags
the video by 3 frames gives -3), the confidence is the median distance minus
the best. Clips off by more than a frame, or with a low confidence, are what
keeps an expert's loss at 0.69 and a generator from syncing.

Writes --out (clip, frames, offset, confidence, error) and prints a summary; a
clip that cannot be read is reported and skipped. --resume continues an
interrupted run from the rows already written.
"""
import argparse
import csv
import os
import sys

import numpy as np

from cli import UserError, add_hparams_argument, hparams_from_args, run_main

FIELDS = ["clip", "frames", "offset", "confidence", "error"]


class ClipError(Exception):
    """A clip that cannot be audited (reported in the CSV, the run goes on)."""


def read_faces(clip, ids, img_size):
    """{frame id: (img_size, img_size, 3) BGR uint8} as the dataset reads them; ClipError if one fails."""
    from dataset import read_window
    faces = {}
    for i in sorted(ids):
        frame = read_window([os.path.join(clip, f"{i}.jpg")], img_size)
        if frame is None:
            raise ClipError(f"{i}.jpg cannot be read")
        faces[i] = frame[0]
    return faces


def expert_inputs(faces, mel, hp):
    """Face windows (N, 15, H/2, W) and mel windows (M, 1, 80, 16) of a clip, with their start frames.

    As the expert is trained (dataset.TalkingFaceDataset): 5 consecutive frames
    stacked on channels, lower halves, / 255; the mel window of frame f starts
    at int(80 f / fps).
    """
    from dataset import crop_mel
    from hparams import SYNCNET_MEL_STEP_SIZE, SYNCNET_T
    starts = [i for i in sorted(faces) if all(i + t in faces for t in range(SYNCNET_T))]
    windows = [np.concatenate([faces[i + t] for t in range(SYNCNET_T)], axis=2) for i in starts]  # (H, W, 15)
    x = np.asarray(windows, np.float32).transpose(0, 3, 1, 2)[:, :, hp.img_size // 2:] / 255.
    audio_frames, mels = [], []
    for f in range(max(faces) + 1):
        m = crop_mel(mel, f, hp.fps)
        if m.shape[0] == SYNCNET_MEL_STEP_SIZE:
            audio_frames.append(f)
            mels.append(m.T)
    y = np.asarray(mels, np.float32)[:, None]  # (M, 1, 80, 16)
    return starts, np.ascontiguousarray(x), audio_frames, y


def embed(encode, inputs, batch_size, device):
    import torch
    out = []
    with torch.inference_mode():
        for first in range(0, len(inputs), batch_size):
            batch = torch.from_numpy(inputs[first:first + batch_size]).to(device)
            out.append(encode(batch).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 512), np.float32)


def distance_curve(face_starts, faces, audio_frames, audio, vshift):
    """Mean distance per shift -vshift..vshift over the (window, audio) pairs inside the clip.

    Embeddings are unit vectors: distance sqrt(2 - 2 cos). NaN where a shift has no pair.
    """
    cosine = faces @ audio.T  # (N, M)
    distance = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * cosine))
    column = {f: j for j, f in enumerate(audio_frames)}
    curve = np.full(2 * vshift + 1, np.nan)
    for k, shift in enumerate(range(-vshift, vshift + 1)):
        pairs = [(i, column[s + shift]) for i, s in enumerate(face_starts) if s + shift in column]
        if pairs:
            rows, cols = zip(*pairs)
            curve[k] = distance[list(rows), list(cols)].mean()
    return curve


def offset_and_confidence(curve, vshift):
    """syncnet_python's arithmetic on a curve: offset = vshift - argmin, confidence = median - min."""
    valid = ~np.isnan(curve)
    best = int(np.nanargmin(curve))
    ordered = np.sort(curve[valid])
    median = ordered[(len(ordered) - 1) // 2]  # torch.median's lower middle, as syncnet_python
    return vshift - best, float(median - curve[best])


def audit_clip(model, clip, hp, device, vshift=15, batch_size=64, mels=None):
    """(frames, offset, confidence) of one clip folder; ClipError when it cannot be audited."""
    from audio import AudioError
    from dataset import MelCache, inspect_clip
    ids, problem = inspect_clip(clip)
    if problem is not None:
        raise ClipError(problem)
    faces = read_faces(clip, ids, hp.img_size)
    try:
        mel = (mels or MelCache(hp)).get(clip)
    except (AudioError, OSError, ValueError) as e:
        raise ClipError(f"audio.wav cannot be read ({str(e).split(': ')[-1]})") from None
    starts, x, audio_frames, y = expert_inputs(faces, mel, hp)
    if not starts or not audio_frames:
        raise ClipError("no 5-frame window with audio")
    face_embeddings = embed(model.embed_faces, x, batch_size, device)
    audio_embeddings = embed(model.embed_audio, y, batch_size, device)
    curve = distance_curve(starts, face_embeddings, audio_frames, audio_embeddings, vshift)
    offset, confidence = offset_and_confidence(curve, vshift)
    return len(ids), offset, confidence


def clips_of(data_root, filelists):
    """[(clip name, folder)] of the filelists, or of every <group>/<clip> folder under data_root."""
    if not os.path.isdir(data_root):
        raise UserError(f"{data_root}: folder not found (--data_root)")
    names = []
    if filelists:
        for path in filelists:
            if not os.path.isfile(path):
                raise UserError(f"{path}: filelist not found (--filelist)")
            with open(path) as f:
                names += [line.split()[0] for line in f if line.strip()]
        names = list(dict.fromkeys(names))
    else:
        for group in sorted(os.listdir(data_root)):
            folder = os.path.join(data_root, group)
            if os.path.isdir(folder) and not group.startswith("."):
                names += [f"{group}/{clip}" for clip in sorted(os.listdir(folder))
                          if os.path.isdir(os.path.join(folder, clip))]
    if not names:
        raise UserError(f"{data_root}: no clips to audit")
    return [(name, os.path.join(data_root, name)) for name in names]


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def summarize(rows, max_abs_offset):
    done = [r for r in rows if not r["error"]]
    failed = len(rows) - len(done)
    lines = [f"audited {len(done)} clips" + (f", {failed} could not be read" if failed else "")]
    if done:
        offsets = np.array([int(r["offset"]) for r in done])
        confidence = np.array([float(r["confidence"]) for r in done])
        off = int(np.sum(np.abs(offsets) > max_abs_offset))
        lines.append(f"off by more than {max_abs_offset} frame(s): {off} ({100 * off / len(done):.1f}%); "
                     f"offset 0: {int(np.sum(offsets == 0))}")
        p10, p50, p90 = np.percentile(confidence, [10, 50, 90])
        lines.append(f"confidence: median {p50:.3f}, 10th percentile {p10:.3f}, 90th {p90:.3f}")
    return lines


def write_filtered_filelists(rows, filelists, out_dir, max_abs_offset, min_confidence):
    """Each input filelist written to out_dir under its name, keeping the clips that pass."""
    from fileio import atomic_output
    kept = {r["clip"] for r in rows if not r["error"] and abs(int(r["offset"])) <= max_abs_offset
            and float(r["confidence"]) >= min_confidence}
    counts = []
    for path in filelists:
        with open(path) as f:
            lines = [line for line in f if line.strip() and line.split()[0] in kept]
        target = os.path.join(out_dir, os.path.basename(path))
        with atomic_output(target, suffix=".txt") as tmp, open(tmp, "w") as out:
            out.writelines(line if line.endswith("\n") else line + "\n" for line in lines)
        counts.append(f"{target}: {len(lines)} clips")
    return counts


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_root", required=True, help="preprocessed dataset (<group>/<clip>/<i>.jpg + audio.wav)")
    p.add_argument("--checkpoint_path", required=True, help="trained expert (lipsync_expert.pth works)")
    p.add_argument("--filelist", nargs="+", default=None, help="audit these filelists' clips (default: all)")
    p.add_argument("--out", default="sync_audit.csv", help="report: clip,frames,offset,confidence,error")
    p.add_argument("--vshift", type=int, default=15, help="largest shift tried, in frames")
    p.add_argument("--write_filelists", default=None, metavar="DIR",
                   help="write each --filelist here keeping the clips within the limits below")
    p.add_argument("--max_abs_offset", type=int, default=1, help="largest |offset| kept (frames)")
    p.add_argument("--min_confidence", type=float, default=0.0, help="smallest confidence kept")
    p.add_argument("--batch_size", type=int, default=64, help="windows per expert batch")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--resume", action="store_true", help="keep the rows of an interrupted run and go on")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_hparams_argument(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.vshift < 1 or args.batch_size < 1:
        raise UserError("--vshift and --batch_size must be at least 1")
    if args.write_filelists and not args.filelist:
        raise UserError("--write_filelists needs --filelist (the lists to filter)")
    hp = hparams_from_args(args)
    clips = clips_of(args.data_root, args.filelist)
    from tqdm import tqdm
    from checkpoints import load_sized_model
    from dataset import MelCache
    from devices import get_device
    from hparams import override_names
    from models import SyncNet_color
    device = get_device(args.device)
    # The expert's size is its checkpoint's (96 or 288); an explicit --hparams img_size must match it.
    required = hp.img_size if "img_size" in override_names(args.hparams) else None
    model, _ = load_sized_model(SyncNet_color, args.checkpoint_path, device, img_size=required)
    model.eval()
    hp = hp.replace(img_size=model.img_size)  # faces read at the expert's size

    # Rows go to a partial file as they come (flushed), renamed to --out when all are done.
    partial = args.out + ".partial"
    rows = read_rows(partial) if args.resume and os.path.isfile(partial) else []
    done = {r["clip"] for r in rows}
    mels = MelCache(hp)
    with open(partial, "a" if rows else "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if not rows:
            writer.writeheader()
        for name, folder in tqdm(clips, desc="audit", unit="clip", disable=args.quiet):
            if name in done:
                continue
            try:
                frames, offset, confidence = audit_clip(model, folder, hp, device, args.vshift,
                                                        args.batch_size, mels)
                row = {"clip": name, "frames": frames, "offset": offset, "confidence": f"{confidence:.4f}",
                       "error": ""}
            except ClipError as e:
                tqdm.write(f"skipped {name}: {e}", file=sys.stderr)
                row = {"clip": name, "frames": "", "offset": "", "confidence": "", "error": str(e)}
            writer.writerow(row)
            f.flush()
            rows.append({k: str(v) for k, v in row.items()})
    os.replace(partial, args.out)
    for line in summarize(rows, args.max_abs_offset):
        print(line)
    print(f"report: {args.out}")
    if args.write_filelists:
        for line in write_filtered_filelists(rows, args.filelist, args.write_filelists, args.max_abs_offset,
                                             args.min_confidence):
            print(line)
    return 0


if __name__ == "__main__":
    run_main(main)
