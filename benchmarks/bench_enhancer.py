"""GFPGAN v1.4 restoration speed per 512x512 face (fp32, bf16) and the bf16 PSNR, with the recipe weights.

    python benchmarks/bench_enhancer.py
    python benchmarks/bench_enhancer.py --repeat 5 --faces 2 --batch_size 2
    python benchmarks/bench_enhancer.py --device cuda --precisions fp32,bf16,fp16 --faces 16 --batch_size 8
    python benchmarks/bench_enhancer.py --pass --precisions fp32,bf16 --repeat 1   # inference.py's pass

Times `enhancer.restore` (resize, normalise, network, resize back) on synthetic
512x512 face crops: seconds per face, median of --repeat timed runs after one
warm-up, and the process's CPU seconds per face (all threads; on a machine
shared with other work, CPU seconds / threads is about what a quiet one takes).
Precisions: fp32; bf16 / fp16 under autocast (fp32 weights); bf16-cast
(weights cast once). The speed does not depend on the weights; the
PSNR is the network's output against fp32 on the golden input (the test's),
with the fp32 output's peak-to-peak range as the peak.

--pass times inference.py --enhance's whole pass per output frame instead
(enhancer.enhance_frames: the square around the face box cropped, restored,
blended back over the lower face) on 1280x720 frames with a 260x300 face box
(a 480x480 square); "rest" is the pass's time outside the network, measured
with a stand-in that returns its input.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cli import UserError, run_main  # noqa: E402

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "bf16-cast": "bfloat16"}


def recipe_gfpgan(device):
    import torch
    from models.gfpgan import GFPGANv1Clean, recipe_state_dict
    with torch.device("meta"):
        model = GFPGANv1Clean()
    model.load_state_dict(recipe_state_dict(model), strict=True, assign=True)
    return model.eval().to(device)


BOX = (200, 500, 520, 780)  # (y1, y2, x1, x2) in a 1280x720 frame: a 260x300 face, a 480x480 square


class Identity:
    """Stands in for GFPGAN in --pass: the input back, to time what the pass does around the network."""

    def __init__(self):
        import torch
        self.p = torch.zeros(1)

    def parameters(self):
        yield self.p

    def to(self, device):
        self.p = self.p.to(device)
        return self

    def __call__(self, x, return_rgb=False, randomize_noise=False):
        return x, []


def psnr(x, ref):
    span = float(ref.max() - ref.min())
    return 10 * np.log10(span ** 2 / float(((x.float() - ref) ** 2).mean()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps (default cpu)")
    parser.add_argument("--precisions", default="fp32,bf16,bf16-cast",
                        help=f"comma separated, of {', '.join(DTYPES)} (default fp32,bf16,bf16-cast)")
    parser.add_argument("--faces", type=int, default=1, help="faces per timed run (default 1)")
    parser.add_argument("--batch_size", type=int, default=1, help="faces per network pass (default 1)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per precision (default 3)")
    parser.add_argument("--pass", dest="whole_pass", action="store_true",
                        help="time inference.py's pass on 1280x720 frames (crop, restore, blend) per frame")
    args = parser.parse_args(argv)
    import torch
    from devices import get_device
    from enhancer import enhance_frames, restore
    from synthetic import draw_face
    precisions = args.precisions.split(",")
    if unknown := [p for p in precisions if p not in DTYPES]:
        raise UserError(f"--precisions: unknown {', '.join(unknown)} (use {', '.join(DTYPES)})")
    device = get_device(args.device)
    what = "1280x720 frame(s) with a 260x300 face" if args.whole_pass else "face(s) of 512x512"
    unit = "frame" if args.whole_pass else "face"
    print(f"GFPGANv1Clean on {device} ({torch.get_num_threads()} threads), {args.faces} {what} "
          f"per run, batch {args.batch_size}, median of {args.repeat}; load average "
          f"{os.getloadavg()[0]:.1f} at start")
    fp32_model = recipe_gfpgan(device)
    faces = np.stack([draw_face(512, 512, mouth_open=0.3 * i % 1, seed=i) for i in range(args.faces)])
    golden_in = torch.from_numpy(np.random.RandomState(7).uniform(-1, 1, (1, 3, 512, 512)).astype(np.float32))
    reference = None
    if args.whole_pass:
        frames = [draw_face(720, 1280, mouth_open=0.3 * i % 1, box=(BOX[2], BOX[0], BOX[3], BOX[1]), seed=i)
                  for i in range(args.faces)]
        identity = Identity().to(device)
        list(enhance_frames(zip(frames, [BOX] * len(frames)), identity, batch_size=args.batch_size))  # warm-up
        start = time.perf_counter()
        list(enhance_frames(zip(frames, [BOX] * len(frames)), identity, batch_size=args.batch_size))
        print(f"  pass outside the network (crop, resizes, blend): "
              f"{(time.perf_counter() - start) / len(frames) * 1000:.0f} ms per frame")
    for name in precisions:
        dtype = getattr(torch, DTYPES[name])
        model = fp32_model if name != "bf16-cast" else recipe_gfpgan(device).to(dtype)
        run = lambda: restore(faces, model, dtype=dtype, batch_size=args.batch_size)  # noqa: E731
        if args.whole_pass:
            run = lambda: list(enhance_frames(zip(frames, [BOX] * len(frames)), model, dtype,  # noqa: E731
                                              batch_size=args.batch_size))
        run()  # warm-up
        times, cpu = [], []
        for _ in range(args.repeat):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append((time.perf_counter() - start) / args.faces)
            cpu.append((time.process_time() - start_cpu) / args.faces)
        autocast = torch.autocast(device.type, dtype=dtype) if name in ("bf16", "fp16") else torch.autocast(
            device.type, enabled=False)
        with torch.inference_mode(), autocast:
            out = model(golden_in.to(device, next(model.parameters()).dtype), return_rgb=False)[0].float().cpu()
        if name == "fp32":
            reference = out
        quality = f"PSNR vs fp32 {psnr(out, reference):5.1f} dB" if reference is not None and name != "fp32" else ""
        print(f"  {name:>9}: {statistics.median(times):6.2f} s per {unit}  "
              f"(runs {', '.join(f'{t:.2f}' for t in times)}; CPU {statistics.median(cpu):.2f} s)  {quality}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    run_main(main)
