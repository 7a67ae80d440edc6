"""Frechet Inception Distance between two sets of frames, as pytorch-fid computes it (the paper's FID).

    python evaluation/fid.py real_frames/ generated_frames/
    python evaluation/fid.py real.mp4 results/                    # a video, a folder of videos
    python evaluation/fid.py --save_stats real_frames/ real.npz   # pytorch-fid's --save-stats
    python evaluation/fid.py real.npz results/ --device cpu --batch_size 25

Each PATH is a folder of images, a single video, a folder of videos (every
frame counts; a folder's images, then its videos, in name order; subfolders
are not searched) or a `.npz` of statistics (`mu`, `sigma`, as pytorch-fid
writes them). Images are read as RGB, as PIL's open().convert("RGB") does
(EXIF orientation not applied), and may differ in size. The output is
pytorch-fid's line `FID:  <value>`.

Features are computed batch by batch while a background thread decodes the
next frames; only running float64 sums are kept (mean and covariance equal
numpy's to ~1e-12), so memory does not grow with the number of frames. A file
in a folder that cannot be read is skipped and named at the end, and the exit
status is then 1 (the FID printed is that of the frames that could be read).
Weights: checkpoints/pt_inception-2015-12-05-6726825d.pth, downloaded when
missing; --weights for another copy.
"""
import os
import sys
import zipfile

if not __package__:  # run as `python evaluation/fid.py`: the project's modules are one folder up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from cli import UserError, run_main

FID_IMAGE_EXTENSIONS = {".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"}
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv"}
EPS = 1e-6  # added to both covariances' diagonals when sqrtm(S1 S2) is not finite
MAX_IMAGINARY = 1e-3  # largest imaginary part allowed on sqrtm's diagonal
CONVERT_PIXELS = 1 << 23  # uint8 frames converted to float at most this many pixels at a time
# On CPU the network takes at most this many frames at a time: as fast as 50 (faster, on 2
# cores), and its activations (~9 MB a frame at 299x299) take a fifth of the memory.
CPU_PASS = 10


class Sources:
    """The media of one PATH: image and video files, each read in name order."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.in_folder = os.path.isdir(self.path)
        self.failures = []  # (file, reason) of files in a folder that could not be read
        if not os.path.exists(self.path):
            raise UserError(f"{self.path}: no such file or folder")
        if self.in_folder:
            names = sorted(n for n in os.listdir(self.path) if not n.startswith("."))
            files = [os.path.join(self.path, n) for n in names]
            files = [f for f in files if os.path.isfile(f)]
            self.images = [f for f in files if _extension(f) in FID_IMAGE_EXTENSIONS]
            self.videos = [f for f in files if _extension(f) in VIDEO_EXTENSIONS]
            if not self.images and not self.videos:
                raise UserError(f"{self.path}: no images or videos in this folder (subfolders are "
                                f"not searched; images: {_listed(FID_IMAGE_EXTENSIONS)}; "
                                f"videos: {_listed(VIDEO_EXTENSIONS)})")
        elif _extension(self.path) in FID_IMAGE_EXTENSIONS:
            self.images, self.videos = [self.path], []
        else:
            self.images, self.videos = [], [self.path]  # any other file: whatever ffmpeg can decode
        self.frame_counts = {video: self._count(video) for video in self.videos}
        self.videos = [v for v in self.videos if self.frame_counts[v] is not None]

    def _count(self, video):
        """The frame count the container declares (for the progress bar); None if it cannot be opened."""
        from videoio import VideoReader
        try:
            with VideoReader(video) as reader:
                return max(0, reader.frame_count)
        except UserError as e:
            self.fail(video, e)
            return None

    def fail(self, file, error):
        """Inside a folder, note the file and go on; a PATH that is itself the file stops here."""
        if not self.in_folder:
            raise error if isinstance(error, UserError) else UserError(f"{file}: {error}")
        reason = str(error)
        reason = reason[len(file) + 2:] if reason.startswith(f"{file}: ") else reason
        self.failures.append((file, reason))

    @property
    def expected_frames(self):
        return len(self.images) + sum(self.frame_counts[v] for v in self.videos)

    def describe(self):
        parts = [f"{len(self.images)} images"] if self.images else []
        parts += [f"{len(self.videos)} videos"] if self.videos else []
        return f"{self.path}: {', '.join(parts) or 'nothing readable'}"

    def frames(self, num_workers=1, chunk=50):
        """RGB uint8 (H, W, 3) frames, in order; unreadable files are noted (see `fail`)."""
        if num_workers > 1 and len(self.images) > 1:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(num_workers) as pool:
                for start in range(0, len(self.images), chunk):
                    yield from self._kept(pool.map(_read_rgb, self.images[start:start + chunk]))
        else:
            yield from self._kept(map(_read_rgb, self.images))
        for video in self.videos:
            yield from self._video_frames(video)

    def _kept(self, results):
        for file, frame in results:
            if isinstance(frame, Exception):
                self.fail(file, frame)
            else:
                yield frame

    def _video_frames(self, video):
        import cv2

        from videoio import VideoReader
        count = 0
        with VideoReader(video) as reader:
            for frame in reader:
                count += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if count == 0:
            self.fail(video, UserError(f"{video}: no frames could be decoded"))


def _extension(path):
    return os.path.splitext(path)[1].lower()


def _listed(extensions):
    return " ".join(sorted(extensions))


def _read_rgb(path):
    """(path, RGB uint8 frame) or (path, the error): as PIL's open(path).convert("RGB"), EXIF ignored."""
    import cv2
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as e:
        return path, UserError(f"{path}: cannot read ({e.strerror or e})")
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION  # pytorch-fid does not rotate by EXIF
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        return path, UserError(f"{path}: cannot read as an image")
    return path, cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class FeatureStatistics:
    """Running mean and covariance of feature rows, in float64, without keeping the rows.

    Sums are of (x - shift), the shift being the first batch's mean, so the
    covariance does not lose digits to a large mean. `covariance()` equals
    numpy.cov(rowvar=False) of all rows to ~1e-12 relative.
    """

    def __init__(self):
        self.count = 0
        self._shift = self._sum = self._outer = None

    def update(self, features):
        x = np.asarray(features, dtype=np.float64)  # (N, D)
        if not len(x):
            return
        if self._shift is None:
            self._shift = x.mean(axis=0)
            self._sum = np.zeros_like(self._shift)
            self._outer = np.zeros((x.shape[1], x.shape[1]))
        x = x - self._shift
        self.count += len(x)
        self._sum += x.sum(axis=0)
        self._outer += x.T @ x

    def mean(self):
        return self._shift + self._sum / self.count

    def covariance(self):
        centred = self._sum / self.count
        return (self._outer - self.count * np.outer(centred, centred)) / (self.count - 1)


def frames_to_input(frames, device):
    """RGB uint8 (H, W, 3) frames (any mix of sizes) -> (N, 3, 299, 299) floats in [-1, 1] on `device`.

    As pytorch-fid's ToTensor (uint8 / 255 in float32) and resize; runs of
    same-sized frames are converted together, a few million pixels at a time.
    """
    import torch

    from evaluation.inception import resize_input
    out, start = [], 0
    while start < len(frames):
        shape = frames[start].shape
        end = start + 1
        limit = start + max(1, CONVERT_PIXELS // (shape[0] * shape[1]))
        while end < min(len(frames), limit) and frames[end].shape == shape:
            end += 1
        run = torch.from_numpy(np.stack(frames[start:end])).to(device)  # (n, H, W, 3) uint8
        x = run.permute(0, 3, 1, 2).float().div_(255)  # (n, 3, H, W), channels_last in memory
        out.append(resize_input(x))
        start = end
    return out[0] if len(out) == 1 else torch.cat(out)


def compute_statistics(sources, model, batch_size=50, device="cpu", num_workers=1, progress=True):
    """FeatureStatistics of every frame of `sources` (a Sources), `batch_size` frames a pass.

    On CPU a pass takes at most CPU_PASS frames. With num_workers >= 1 a
    background thread decodes the next frames (images on num_workers threads)
    while the network runs; 0 decodes in this thread.
    """
    import torch
    from tqdm import tqdm

    from streaming import prefetch
    stats = FeatureStatistics()
    frames = sources.frames(num_workers)
    if num_workers >= 1:
        frames = prefetch(frames, size=batch_size)
    pass_size = min(batch_size, CPU_PASS) if torch.device(device).type == "cpu" else batch_size
    bar = tqdm(total=sources.expected_frames, unit="frame", desc=os.path.basename(sources.path),
               disable=None if progress else True, file=sys.stderr)
    with bar, torch.inference_mode():
        for batch in _batches(frames, pass_size):
            stats.update(model.pool3(frames_to_input(batch, device)).cpu().numpy())  # (n, 2048)
            bar.update(len(batch))
    return stats


def _batches(items, size):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_statistics(path):
    """(mu, sigma) from a pytorch-fid .npz; UserError if it holds something else."""
    try:
        with np.load(path) as data:
            mu, sigma = data["mu"], data["sigma"]
    except KeyError:
        raise UserError(f"{path}: not FID statistics (no 'mu' and 'sigma' arrays)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: cannot read as .npz ({e or type(e).__name__})") from None
    mu, sigma = np.atleast_1d(mu).astype(np.float64), np.atleast_2d(sigma).astype(np.float64)
    if sigma.shape != (len(mu), len(mu)):
        raise UserError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not fit together")
    return mu, sigma


def _sqrtm(matrix):
    """scipy.linalg.sqrtm(matrix, disp=False)'s square root, on SciPy before and after 1.16.

    SciPy 1.16 deprecated `disp` (1.18 removes it) and returns the root alone,
    warning where disp=False stayed silent (a singular matrix): silenced here too.
    """
    import warnings

    import scipy
    import scipy.linalg
    major, minor = (int("".join(c for c in part if c.isdigit()) or 0)
                    for part in scipy.__version__.split(".")[:2])
    if (major, minor) < (1, 16):
        return scipy.linalg.sqrtm(matrix, disp=False)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        return scipy.linalg.sqrtm(matrix)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=EPS):
    """|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2)), as pytorch-fid computes it."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different sizes: {mu1.shape} and {mu2.shape}")
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        print(f"fid calculation produces singular product; adding {eps} to diagonal of cov estimates",
              file=sys.stderr)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=MAX_IMAGINARY):
            raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def sources_statistics(sources, model, batch_size=50, device="cpu", num_workers=1, progress=True):
    """(mu, sigma) of the frames of `sources` (a Sources); UserError for fewer than 2 frames."""
    stats = compute_statistics(sources, model, batch_size, device, num_workers, progress)
    if stats.count < 2:
        unread = f" ({len(sources.failures)} files could not be read)" if sources.failures else ""
        raise UserError(f"{sources.path}: FID needs at least 2 frames, found {stats.count}{unread}")
    dims = len(stats.mean())
    if stats.count < dims:
        print(f"warning: {sources.path}: {stats.count} frames, fewer than the {dims} feature "
              f"dimensions: the covariance is singular and FID biased (compare FIDs of equal counts)",
              file=sys.stderr)
    return stats.mean(), stats.covariance()


def open_input(path):
    """A PATH of the command line: (mu, sigma) of a .npz, else its Sources (files listed, not read)."""
    if os.path.isfile(path) and _extension(path) == ".npz":
        return load_statistics(path)
    return Sources(path)


def path_statistics(path, model, batch_size=50, device="cpu", num_workers=1, progress=True):
    """(mu, sigma, failures) of a PATH: [(file, reason)] of the files of a folder that were skipped."""
    opened = open_input(path)
    if not isinstance(opened, Sources):
        return (*opened, [])
    return (*sources_statistics(opened, model, batch_size, device, num_workers, progress),
            opened.failures)


def save_statistics(path, mu, sigma):
    from fileio import atomic_output
    with atomic_output(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, mu=mu, sigma=sigma)


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 1)[1])
    parser.add_argument("paths", nargs=2, metavar="PATH",
                        help="folder of images, video, folder of videos, or .npz statistics; "
                             "with --save_stats: the input, then the .npz to write")
    parser.add_argument("--weights", default=None,
                        help="InceptionV3 weights (default checkpoints/pt_inception-2015-12-05-6726825d.pth)")
    parser.add_argument("--batch_size", "--batch-size", type=int, default=50,
                        help=f"frames per pass of the network (default 50; at most {CPU_PASS} on CPU)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--num_workers", "--num-workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="threads decoding images while the network runs (0: none)")
    parser.add_argument("--save_stats", "--save-stats", action="store_true",
                        help="write the statistics of the first PATH to the second (.npz)")
    args = parser.parse_args(argv)
    # OpenCV's ffmpeg would print its own line for each unreadable video; ours names the file.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    if args.batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {args.batch_size}")
    if args.num_workers < 0:
        raise UserError(f"--num_workers must be 0 or more, got {args.num_workers}")
    if args.save_stats:
        out = args.paths[1]
        if _extension(out) != ".npz":
            raise UserError(f"{out}: --save_stats writes a .npz file; name it so")
        if os.path.exists(out):
            raise UserError(f"{out}: already exists (not overwritten)")
    inputs = args.paths[:1] if args.save_stats else args.paths
    opened = [open_input(path) for path in inputs]  # every listing error before any frame is read
    sources = [s for s in opened if isinstance(s, Sources)]
    model = device = None
    if sources:
        from devices import get_device
        from evaluation.inception import load_inception
        device = get_device(args.device)
        model = load_inception(args.weights, device)
    statistics = []
    for item in opened:
        if isinstance(item, Sources):
            print(item.describe(), file=sys.stderr)
            item = sources_statistics(item, model, args.batch_size, device, args.num_workers)
        statistics.append(item)
    failures = [f for s in sources for f in s.failures]
    if args.save_stats:
        save_statistics(args.paths[1], *statistics[0])
        print(f"saved {args.paths[1]}", file=sys.stderr)
    else:
        (mu1, sigma1), (mu2, sigma2) = statistics
        if mu1.shape != mu2.shape:
            raise UserError(f"{inputs[0]} and {inputs[1]}: statistics of different sizes "
                            f"({mu1.shape[0]} and {mu2.shape[0]} dimensions)")
        if len(mu1) >= 512:
            print(f"Frechet distance: scipy's sqrtm of a {len(mu1)}x{len(mu1)} matrix "
                  f"(about half a minute on 2 CPU cores)", file=sys.stderr)
        try:
            value = frechet_distance(mu1, sigma1, mu2, sigma2)
        except ValueError as e:
            raise UserError(f"{inputs[0]} vs {inputs[1]}: {e}") from None
        print("FID: ", value)  # pytorch-fid's line
    if failures:
        for file, reason in failures:
            print(f"error: {file}: {reason} (skipped)", file=sys.stderr)
        raise UserError(f"{len(failures)} files could not be read and were left out (listed above)")
    return 0


if __name__ == "__main__":
    run_main(main)
