"""Throughput of the training pipeline: data-loader samples/s and training steps/s per trainer.

    python benchmarks/bench_training.py                     # CPU, small batches
    python benchmarks/bench_training.py --device cuda --expert_batch 64 --generator_batch 16 --steps 20
    python benchmarks/bench_training.py --img_sizes 96 288 --num_workers 0   # the four trainers at both sizes

Writes a small synthetic dataset to a temporary folder, then times (1) the
expert and generator datasets through a DataLoader (mels cached after the
first pass) and (2) optimisation steps of each trainer on batches already in
memory (the same code path as the scripts: trainers.py train_step), for the
four trainers (expert, generator, GAN, Wasserstein GAN) at each --img_sizes; the
generators are judged by a 96 expert (the published size), as in the HD recipe.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def time_loader(data, batch_size, num_workers, batches):
    import torch
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, num_workers=num_workers,
                                         sampler=list(range(batch_size * (batches + 1))))
    for _ in range(3 * len(data.clips)):
        data[0]  # compute (and cache to disk) the clips' mels first: timing the steady state
    iterator = iter(loader)
    next(iterator)  # worker start-up is not the steady state either
    t0 = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - t0)


def time_steps(trainer, loader, steps):
    batches = []
    for batch in loader:
        batches.append([t.to(trainer.device) for t in batch[:-1]])
        if len(batches) == 2:
            break
    trainer.train_step(batches[0])  # warm-up (allocations, autotuning)
    t0 = time.perf_counter()
    for i in range(steps):
        trainer.train_step(batches[i % 2])
    if trainer.device.type == "cuda":
        import torch
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--expert_batch", type=int, default=8)
    parser.add_argument("--generator_batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--loader_batches", type=int, default=10)
    parser.add_argument("--num_workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--img_sizes", type=int, nargs="+", choices=(96, 288), default=[96])
    args = parser.parse_args(argv)

    import torch

    from checkpoints import save_checkpoint
    from dataset import TalkingFaceDataset, load_split
    from hparams import hparams
    from make_synthetic_dataset import write_dataset
    from models import SyncNet_color
    from trainers import ExpertTrainer, GANTrainer, GeneratorTrainer, WassersteinTrainer
    from training import base_parser

    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "data")
        write_dataset(root, clips=12, seconds=3.0, held_out=1, progress=False)
        clips = load_split(root, "train", os.path.join(root, "filelists"))
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
        for kind, batch in (("syncnet", args.expert_batch), ("wav2lip", args.generator_batch)):
            data = TalkingFaceDataset(clips, hparams, kind)
            for workers in args.num_workers:
                rate = time_loader(data, batch, workers, args.loader_batches)
                print(f"data loader {kind:8s} batch {batch:3d}, {workers} workers: {rate:8.1f} samples/s")

        expert_path = os.path.join(tmp, "expert.pth")
        save_checkpoint(expert_path, SyncNet_color())
        flags = ["--data_root", root, "--checkpoint_dir", os.path.join(tmp, "ck"), "--device", args.device,
                 "--filelists_dir", os.path.join(root, "filelists"), "--num_workers", "0",
                 *(["--amp"] if args.amp else [])]
        for img_size in args.img_sizes:
            hp = hparams.replace(syncnet_batch_size=args.expert_batch, batch_size=args.generator_batch,
                                 img_size=img_size)
            for name, trainer_class in (("color_syncnet_train", ExpertTrainer), ("wav2lip_train", GeneratorTrainer),
                                        ("hq_wav2lip_train", GANTrainer),
                                        ("wloss_hq_wav2lip_train", WassersteinTrainer)):
                parser = base_parser("")
                parser.add_argument("--syncnet_checkpoint_path", default=expert_path)
                parser.add_argument("--critic_steps", type=int, default=1)
                trainer = trainer_class(parser.parse_args(flags), hp)
                trainer.build()
                if "syncnet_wt" in trainer.state:
                    trainer.state["syncnet_wt"] = 0.01  # time the step with the expert's sync loss in it
                batch = getattr(hp, trainer.batch_size_field)
                loader = torch.utils.data.DataLoader(TalkingFaceDataset(clips, hp, trainer.kind), batch_size=batch)
                rate = time_steps(trainer, loader, args.steps)
                print(f"training {name:23s} at {img_size:3d}, batch {batch:3d}: {rate:6.3f} steps/s "
                      f"({rate * batch:6.1f} samples/s, {1 / rate:5.2f} s/step)", flush=True)


if __name__ == "__main__":
    main()
