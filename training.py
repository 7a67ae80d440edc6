"""The training loop shared by color_syncnet_train.py, wav2lip_train.py, hq_wav2lip_train.py and
wloss_hq_wav2lip_train.py.

A trainer subclass (trainers.py) says what is trained: its networks and
optimizers, one training step, one eval step, and what eval changes (the sync
weight). This module owns everything else: command-line flags, device, AMP,
DistributedDataParallel under torchrun, data loaders, resume, checkpoint and
eval intervals, the progress bar, log.csv and loss_curves.png.

The face size is hp.img_size (96 or 288, hparams.py or --hparams img_size=288);
a resumed run takes its checkpoint's size, and a size given with --hparams that
contradicts it is a one-line error.

Single process:  python color_syncnet_train.py --data_root D --checkpoint_dir C
Several GPUs:    torchrun --nproc_per_node 4 color_syncnet_train.py --data_root D --checkpoint_dir C
"""
import argparse
import collections
import csv
import os
import random
import time

import numpy as np
import torch

from checkpoints import check_checkpoint_size, checkpoint_img_size, checkpoint_name, latest_checkpoint, \
    load_checkpoint, load_state_dict_strict, save_checkpoint, unwrap
from cli import UserError, add_hparams_argument
from fileio import atomic_output
from dataset import SKIP_REASONS, DatasetError, TalkingFaceDataset, load_split

LOG_NAME = "log.csv"
PLOT_NAME = "loss_curves.png"
RUNNING_WINDOW = 100  # steps averaged in the progress bar


def base_parser(doc):
    """The flags every trainer takes; scripts add their own."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", required=True, help="preprocessed dataset (<group>/<clip>/{i.jpg,audio.wav})")
    parser.add_argument("--checkpoint_dir", required=True, help="where checkpoints, samples and logs go")
    parser.add_argument("--checkpoint_path", default=None, help="resume from this checkpoint")
    parser.add_argument("--resume", action="store_true",
                        help="resume from the latest checkpoint in --checkpoint_dir (if any)")
    parser.add_argument("--filelists_dir", default="filelists", help="folder of train.txt and val.txt")
    parser.add_argument("--max_steps", type=int, default=None,
                        help="stop once the global step reaches this (counts across resumes)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision (float16 on CUDA/MPS, bfloat16 on CPU)")
    parser.add_argument("--num_workers", type=int, default=None,
                        help="data loader processes (default hparams num_workers, at most the CPU count)")
    add_hparams_argument(parser)
    return parser


class Env:
    """Device, process rank and world size; DDP is set up when launched by torchrun."""

    def __init__(self, device_name, amp):
        from devices import get_device
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world_size > 1:
            import torch.distributed as dist
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            use_cuda = torch.cuda.is_available() and device_name.split(":")[0] in ("auto", "cuda")
            self.device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
            if use_cuda:
                torch.cuda.set_device(self.device)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if use_cuda else "gloo")
        else:
            self.device = get_device(device_name)
        self.amp = amp
        self.amp_dtype = torch.bfloat16 if self.device.type == "cpu" else torch.float16
        self.is_main = self.rank == 0

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp)

    def grad_scaler(self):
        # Loss scaling is needed for float16 only (CUDA); bfloat16 keeps float32's range.
        return torch.amp.GradScaler(self.device.type, enabled=self.amp and self.device.type == "cuda")

    def wrap(self, model):
        """DistributedDataParallel around a trained network when there are several processes."""
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def broadcast(self, values):
        """Rank 0's floats, on every rank."""
        if self.world_size == 1:
            return values
        import torch.distributed as dist
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.broadcast(t, src=0)
        return t.tolist()


class MetricsLog:
    """log.csv (step, epoch, phase, name, value, seconds) and its plot, loss_curves.png."""

    def __init__(self, folder, resumed_step):
        self.path = os.path.join(folder, LOG_NAME)
        self.plot_path = os.path.join(folder, PLOT_NAME)
        rows = []
        if os.path.isfile(self.path):  # keep history up to the resumed step, drop what came after
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resumed_step]
        self.file = open(self.path, "w", newline="", buffering=1)  # line-buffered: readable while training
        self.writer = csv.writer(self.file)
        self.writer.writerow(["step", "epoch", "phase", "name", "value", "seconds"])
        for r in rows:
            self.writer.writerow([r["step"], r["epoch"], r["phase"], r["name"], r["value"], r["seconds"]])
        self.start = time.time()

    def write(self, step, epoch, phase, values):
        seconds = round(time.time() - self.start, 2)
        for name, value in values.items():
            self.writer.writerow([step, epoch, phase, name, f"{value:.6g}", seconds])

    def plot(self):
        """One panel per logged name: train values (moving average) and eval points against step."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        self.file.flush()
        series = collections.defaultdict(lambda: ([], []))
        with open(self.path, newline="") as f:
            for r in csv.DictReader(f):
                if r["phase"] in ("train", "eval"):
                    steps, values = series[(r["name"], r["phase"])]
                    steps.append(int(r["step"]))
                    values.append(float(r["value"]))
        names = sorted({name for name, _ in series})
        if not names:
            return
        fig, axes = plt.subplots(len(names), 1, figsize=(8, 2.6 * len(names)), squeeze=False)
        for ax, name in zip(axes[:, 0], names):
            if (name, "train") in series:
                steps, values = series[(name, "train")]
                k = max(1, min(RUNNING_WINDOW, len(values) // 20))
                smooth = np.convolve(values, np.ones(k) / k, mode="valid")
                ax.plot(steps[k - 1:], smooth, label=f"train (mean of {k})")
            if (name, "eval") in series:
                ax.plot(*series[(name, "eval")], "o-", label="eval")
            ax.set_ylabel(name)
            ax.legend(loc="upper right", fontsize=8)
        axes[-1, 0].set_xlabel("step")
        fig.tight_layout()
        with atomic_output(self.plot_path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=80)
        plt.close(fig)

    def close(self):
        self.file.close()


class Trainer:
    """The loop skeleton. Subclasses set the class attributes and define build / train_step / eval_step."""

    kind = "syncnet"  # dataset kind
    batch_size_field = "batch_size"
    checkpoint_interval_field = "checkpoint_interval"
    eval_interval_field = "eval_interval"
    eval_steps_field = "eval_steps"
    eval_at_step_one = False
    batches_per_step = 1  # batches a training step loads (WGAN-GP: one per critic update)

    def __init__(self, args, hp):
        self.args, self.hp = args, hp
        self.env = Env(args.device, args.amp)
        self.device = self.env.device
        self.global_step = 0
        self.global_epoch = 0
        self.state = {}  # training state saved in checkpoints (the sync weight)
        self.nets = {}  # checkpoint prefix -> (network, optimizer); the network may be DDP-wrapped
        self.last_saved_step = None

    # --- what subclasses define ---
    def build(self):
        raise NotImplementedError

    def train_step(self, batch):
        """One optimisation step on a batch (tensors on the device); returns {name: float}."""
        raise NotImplementedError

    def eval_step(self, batch):
        """Metrics of one eval batch, {name: float} (no grad, eval mode)."""
        raise NotImplementedError

    def after_eval(self, means):
        """Update self.state from the eval means (rank 0 only; then broadcast)."""

    def save_extras(self, folder):
        """Anything written beside a checkpoint (sample collages)."""

    # --- the loop ---
    def run(self):
        args, hp = self.args, self.hp
        if args.max_steps is not None and args.max_steps < 1:
            raise UserError(f"--max_steps must be at least 1, got {args.max_steps}")
        if self.env.world_size > 1 and getattr(hp, self.batch_size_field) % self.env.world_size:
            raise UserError(f"{self.batch_size_field}={getattr(hp, self.batch_size_field)} must divide "
                            f"by the {self.env.world_size} processes")
        self.hp = hp = self.resolve_img_size(hp)
        train_clips = load_split(args.data_root, "train", args.filelists_dir)
        val_clips = load_split(args.data_root, "val", args.filelists_dir)
        train_data = TalkingFaceDataset(train_clips, hp, self.kind, source=f"{args.filelists_dir}/train.txt")
        val_data = TalkingFaceDataset(val_clips, hp, self.kind, source=f"{args.filelists_dir}/val.txt")
        for data in (train_data, val_data):
            data[0]  # one draw now: an unusable dataset fails here, before anything is written
        self.build()
        self.resume()
        self.seed()
        os.makedirs(args.checkpoint_dir, exist_ok=True)
        self.log = MetricsLog(args.checkpoint_dir, self.global_step) if self.env.is_main else None
        train_loader = self.loader(train_data, persistent=True, batches=self.batches_per_step)
        self.val_loader = self.loader(val_data, persistent=False)
        try:
            self.loop(train_loader)
        except DatasetError as e:
            # Raised in a loader worker, it comes back wrapped with the worker's traceback.
            raise DatasetError(str(e).strip().splitlines()[-1].split("DatasetError: ", 1)[-1]) from None
        finally:
            if self.log is not None:
                self.log.close()
            if self.env.world_size > 1:
                torch.distributed.destroy_process_group()

    def loop(self, train_loader):
        from tqdm import tqdm
        hp, max_steps = self.hp, self.args.max_steps
        checkpoint_interval = getattr(hp, self.checkpoint_interval_field)
        eval_interval = getattr(hp, self.eval_interval_field)
        running = collections.defaultdict(lambda: collections.deque(maxlen=RUNNING_WINDOW))
        self.skips = torch.zeros(len(SKIP_REASONS), dtype=torch.int64)
        bar = tqdm(total=max_steps, initial=self.global_step, disable=not self.env.is_main, unit="step")
        done = max_steps is not None and self.global_step >= max_steps
        while not done and self.global_epoch < hp.nepochs:
            for batch in train_loader:
                self.skips += batch[-1].sum(0)
                batch = [t.to(self.device, non_blocking=True) for t in batch[:-1]]
                losses = self.train_step(batch)
                self.global_step += 1
                step = self.global_step
                for name, value in losses.items():
                    running[name].append(value)
                bar.update(1)
                bar.set_postfix(epoch=self.global_epoch, **{k: f"{np.mean(v):.4f}" for k, v in running.items()})
                if self.log is not None and step % hp.log_interval == 0:
                    self.log.write(step, self.global_epoch, "train", losses)
                # Eval first, so that a checkpoint holds the sync weight its step's eval decided.
                if step % eval_interval == 0 or (self.eval_at_step_one and step == 1):
                    self.evaluate(bar)
                if step == 1 or step % checkpoint_interval == 0:
                    self.save()
                if max_steps is not None and step >= max_steps:
                    done = True
                    break
            else:
                self.global_epoch += 1
        bar.close()
        if self.last_saved_step != self.global_step:
            self.save()

    def resolve_img_size(self, hp):
        """hp with the run's face size: a resumed checkpoint's, unless --hparams says otherwise (an error)."""
        from hparams import IMG_SIZES, override_names
        if hp.img_size not in IMG_SIZES:
            raise UserError(f"img_size must be one of {', '.join(map(str, IMG_SIZES))}, got {hp.img_size} "
                            f"(hparams.py)")
        path = self.args.checkpoint_path
        if path is None and self.args.resume:
            path = latest_checkpoint(self.args.checkpoint_dir)
        if path is None:
            return hp
        size = checkpoint_img_size(path)
        if size == hp.img_size:
            return hp
        if "img_size" in override_names(self.args.hparams):
            raise UserError(f"{path}: a {size}x{size} checkpoint (img_size {size}), but --hparams "
                            f"img_size={hp.img_size} asks for {hp.img_size}x{hp.img_size}")
        if self.env.is_main:
            print(f"resuming a {size}x{size} checkpoint: img_size={size}")
        return hp.replace(img_size=size)

    def loader(self, data, persistent, batches=1):
        workers = self.args.num_workers if self.args.num_workers is not None else self.hp.num_workers
        workers = max(0, min(workers, os.cpu_count() or 1))
        batch = getattr(self.hp, self.batch_size_field) // self.env.world_size * batches
        # Draws are random whatever the index; an epoch is len(data) samples in full batches (at
        # least one: BatchNorm cannot train on a last batch of one).
        epoch = list(range(max(len(data), batch) // batch * batch))
        return torch.utils.data.DataLoader(data, batch_size=batch, sampler=epoch, drop_last=True,
                                           num_workers=workers,
                                           persistent_workers=persistent and workers > 0,
                                           pin_memory=self.device.type == "cuda")

    def seed(self):
        # Different draws on every rank and after every resume.
        seed = self.hp.seed + 7919 * self.env.rank + 104729 * self.global_step
        random.seed(seed)
        np.random.seed(seed % 2 ** 32)
        torch.manual_seed(seed)

    def make_optimizer(self, model, lr, betas=(0.9, 0.999)):
        return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr, betas=betas)

    def optimizer_step(self, loss, optimizer, scaler):
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def resume(self):
        """Restore networks, optimizers, step, epoch and training state from --checkpoint_path / --resume."""
        paths = self.resume_paths()
        for prefix, path in paths.items():
            model, optimizer = self.nets[prefix]
            checkpoint = load_checkpoint(path, self.device)
            check_checkpoint_size(model, checkpoint, path)
            load_state_dict_strict(unwrap(model), checkpoint["state_dict"], path)
            if checkpoint.get("optimizer") is not None:
                # --hparams decides the learning rate and betas (resuming hq's generator under wloss, say)
                settings = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
                optimizer.load_state_dict(checkpoint["optimizer"])
                for group, fresh in zip(optimizer.param_groups, settings):
                    group.update(fresh)
            if prefix == "":
                self.global_step = int(checkpoint.get("global_step", 0))
                self.global_epoch = int(checkpoint.get("global_epoch", 0))
                self.state.update({k: float(checkpoint[k]) for k in self.state if k in checkpoint})
            if self.env.is_main:
                print(f"resumed {prefix or 'model'} from {path} (step {checkpoint.get('global_step', 0)})")
        self.last_saved_step = self.global_step if paths else None

    def resume_paths(self):
        """{prefix: checkpoint path}: from the flags (<prefix>checkpoint_path), or the latest with --resume."""
        paths = {}
        for prefix in self.nets:
            path = getattr(self.args, f"{prefix}checkpoint_path", None)
            if path is None and self.args.resume:
                path = latest_checkpoint(self.args.checkpoint_dir, prefix)
            if path is not None:
                paths[prefix] = path
        return paths

    def save(self):
        """Checkpoints of every trained network (rank 0), the loss plot and the subclass extras."""
        self.last_saved_step = self.global_step
        if not self.env.is_main:
            return
        folder = self.args.checkpoint_dir
        for prefix, (model, optimizer) in self.nets.items():
            extra = {**self.state, "hparams": self.hp.values()} if prefix == "" else {}
            path = os.path.join(folder, checkpoint_name(self.global_step, prefix))
            save_checkpoint(path, model, optimizer if self.hp.save_optimizer_state else None,
                            self.global_step, self.global_epoch, **extra)
        self.save_extras(folder)
        skipped = {f"skipped_{reason}": int(n) for reason, n in zip(SKIP_REASONS, self.skips)}
        self.log.write(self.global_step, self.global_epoch, "data", skipped)
        self.log.plot()

    def evaluate(self, bar):
        """Mean eval metrics over `eval_steps` val batches (rank 0), logged; self.state follows rank 0."""
        if self.env.is_main:
            n = getattr(self.hp, self.eval_steps_field)
            sums, count = collections.defaultdict(float), 0
            with torch.no_grad():
                while count < n:
                    for batch in self.val_loader:
                        batch = [t.to(self.device, non_blocking=True) for t in batch[:-1]]
                        for name, value in self.eval_step(batch).items():
                            sums[name] += value
                        count += 1
                        if count >= n:
                            break
            means = {name: total / count for name, total in sums.items()}
            self.log.write(self.global_step, self.global_epoch, "eval", means)
            bar.write(f"eval at step {self.global_step}: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()))
            self.after_eval(means)
        names = sorted(self.state)
        if names:
            self.state.update(zip(names, self.env.broadcast([self.state[k] for k in names])))
