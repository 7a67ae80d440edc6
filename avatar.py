"""A prepared avatar: a face video's frames, face boxes and face crops, stored once for live lip sync.

    avatar = prepare_avatar("avatars/anna", face_args, device)   # or Avatar("avatars/anna")
    k = avatar.frame_index(i)          # which stored frame output frame i shows (the loop)
    avatar.frame(k), avatar.coords(k), avatar.face(k)

The folder holds avatar.json (the options that made it, the video's identity, the
sizes), frames.npy (N, H, W, 3) and faces.npy (N, S, S, 3) uint8 BGR, memory-mapped
when read, and boxes.npy (N, 4) int64 (y1, y2, x1, x2; -1 where no face). Frames,
boxes and crops are those inference.py computes for the same options (the face
video's frames as streaming.FaceSource decodes them, streaming.FaceBoxes's boxes, the
crops resized to the generator's S x S), so live frames equal inference.py's.
The frames are stored raw: 0.9 MB a frame at 640x480, 6.2 MB at 1080p.
"""
import json
import os
import shutil
import tempfile

import numpy as np

from cli import UserError

LOOPS = ("forward", "pingpong")
FORMAT_VERSION = 1


def loop_index(i, count, loop="forward"):
    """Stored frame shown at output frame i of a `count`-frame avatar.

    forward: i mod count (the reference's loop); pingpong: forward then backward
    without repeating the turning frames (0 1 2 3 2 1 0 1 ...), so a short idle clip
    has no jump.
    """
    if loop == "forward" or count == 1:
        return i % count
    period = 2 * count - 2
    j = i % period
    return j if j < count else period - j


def avatar_options(args, img_size, loop, device_type="cpu"):
    """What decides an avatar's stored content, from realtime.py prepare's arguments (JSON-able).

    With detection (no --box), the detector's batch, device type and precision too, as
    inference.py's box cache keys them: each may move a box by a pixel."""
    path = os.path.abspath(args.face)
    stat = os.stat(path)
    detection = None if args.box[0] != -1 else {"batch": int(args.face_det_batch_size), "device": device_type,
                                                   "precision": args.precision}
    return {
        "version": FORMAT_VERSION,
        "face": {"path": path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
        "img_size": int(img_size), "loop": loop,
        "static": bool(args.static), "fps": float(args.fps), "pads": list(args.pads),
        "resize_factor": int(args.resize_factor), "crop": list(args.crop), "box": list(args.box),
        "rotate": bool(args.rotate), "nosmooth": bool(args.nosmooth), "no_face": args.no_face,
        "face_select": args.face_select, "face_point": list(args.face_point) if args.face_point else None,
        "detect_every": int(args.detect_every), "detect_max_side": args.detect_max_side,
        "blend": bool(args.blend), "detection": detection,
    }


def describe_difference(stored, wanted):
    """'pads 0 10 0 0 there, 0 20 0 0 now; ...' for the options that differ."""
    def shown(value):
        if isinstance(value, dict):
            return value.get("path", "")
        if isinstance(value, list):
            return " ".join(map(str, value))
        return str(value)
    parts = []
    for key in sorted(set(stored) | set(wanted)):
        if stored.get(key) != wanted.get(key):
            if key == "face" and stored.get(key, {}).get("path") == wanted[key]["path"]:
                parts.append(f"face video {wanted[key]['path']} changed since")
            else:
                parts.append(f"{key} {shown(stored.get(key))} there, {shown(wanted.get(key))} now")
    return "; ".join(parts)


class Avatar:
    """A prepared avatar folder, read-only (frames and faces memory-mapped)."""

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        meta_path = os.path.join(self.folder, "avatar.json")
        if not os.path.isfile(meta_path):
            raise UserError(f"{self.folder}: not an avatar folder (no avatar.json; make one with "
                            "realtime.py prepare)")
        try:
            with open(meta_path) as f:
                meta = json.load(f)
            self.options = meta["options"]
            self.fps, self.frame_count = float(meta["fps"]), int(meta["frame_count"])
            self.width, self.height = int(meta["width"]), int(meta["height"])
            self._frames = np.load(os.path.join(self.folder, "frames.npy"), mmap_mode="r")
            self._faces = np.load(os.path.join(self.folder, "faces.npy"), mmap_mode="r")
            self._boxes = np.load(os.path.join(self.folder, "boxes.npy"))
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"{self.folder}: damaged avatar folder ({type(e).__name__}: {e}); "
                            "prepare it again") from None
        if meta.get("version") != FORMAT_VERSION or self.options.get("version") != FORMAT_VERSION:
            raise UserError(f"{self.folder}: avatar made by another version of this code; prepare it again")
        self.img_size, self.loop = int(self.options["img_size"]), self.options["loop"]
        self.blend = bool(self.options["blend"])
        shapes = (self._frames.shape, self._faces.shape, self._boxes.shape)
        if shapes != ((self.frame_count, self.height, self.width, 3),
                      (self.frame_count, self.img_size, self.img_size, 3), (self.frame_count, 4)):
            raise UserError(f"{self.folder}: damaged avatar folder (arrays of shapes {shapes}); prepare it again")

    def frame_index(self, i):
        return loop_index(i, self.frame_count, self.loop)

    def frame(self, k):
        """Stored frame k (read-only; copy before drawing on it)."""
        return self._frames[k]

    def coords(self, k):
        """(y1, y2, x1, x2) of frame k's face, or None (no face: the frame is shown as it is)."""
        y1, y2, x1, x2 = (int(v) for v in self._boxes[k])
        return None if y1 < 0 else (y1, y2, x1, x2)

    def face(self, k):
        """Frame k's face crop resized to img_size (read-only)."""
        return self._faces[k]

    def __repr__(self):
        return (f"Avatar({self.folder!r}: {self.frame_count} frames {self.width}x{self.height} at "
                f"{self.fps:g} fps, {self.img_size}x{self.img_size} faces, {self.loop} loop)")


def prepare_avatar(folder, args, device, img_size=96, loop="forward", progress=True):
    """Prepare (or reuse) the avatar in `folder` from realtime.py prepare's face arguments.

    Reuses a folder prepared with the same options (and the same face file); refuses one
    made with others, or a folder that is not an avatar, with a UserError. Written to a
    temporary folder beside `folder` and renamed when complete.
    """
    import cv2
    from tqdm import tqdm
    from inference import face_boxes, face_source
    from streaming import StageTimes

    if loop not in LOOPS:
        raise UserError(f"--loop must be one of {', '.join(LOOPS)}, got {loop!r}")
    folder = os.fspath(folder)
    wanted = avatar_options(args, img_size, loop, device.type)
    if os.path.exists(folder):
        if os.path.isfile(os.path.join(folder, "avatar.json")):
            avatar = Avatar(folder)
            if avatar.options == wanted:
                return avatar
            raise UserError(f"{folder}: avatar prepared with other options ({describe_difference(avatar.options, wanted)}); "
                            "use another --avatar folder, or delete this one")
        if not os.path.isdir(folder) or os.listdir(folder):
            raise UserError(f"{folder}: exists and is not an avatar folder; give a new --avatar folder")

    source = face_source(args)
    boxes = face_boxes(args, device)
    frame_count = max(1, source.frame_count)  # some containers report 0: the files grow as needed
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(dir=parent, prefix=".tmp-avatar-")
    try:
        tracked = boxes.track(source, source.frames(), frame_count, StageTimes())
        frames = faces = None
        coords_of = []
        bar = tqdm(total=frame_count, desc="prepare avatar", unit="frame", disable=not progress)
        for index, (frame, coords) in enumerate(tracked):
            if frames is None:
                frames = _open_array(work, "frames.npy", (frame_count, *frame.shape))
                faces = _open_array(work, "faces.npy", (frame_count, img_size, img_size, 3))
            if index >= frame_count:  # the container under-reported its frames: grow both files
                frame_count = max(2 * frame_count, 64)
                frames, faces = _grown(work, frames, faces, frame_count)
            frames[index] = frame
            if coords is not None:
                y1, y2, x1, x2 = coords
                faces[index] = cv2.resize(frame[y1:y2, x1:x2], (img_size, img_size))
            coords_of.append(coords if coords is not None else (-1, -1, -1, -1))
            bar.update(1)
        bar.close()
        if not coords_of:
            raise UserError(f"{args.face}: the video has no frames")
        count = len(coords_of)
        if all(c[0] < 0 for c in coords_of):
            raise UserError(f"{args.face}: no face found in any frame")
        frames, faces = _grown(work, frames, faces, count) if count != frame_count else (frames, faces)
        frames.flush()
        faces.flush()
        height, width = frames.shape[1:3]
        del frames, faces
        np.save(os.path.join(work, "boxes.npy"), np.asarray(coords_of, dtype=np.int64).reshape(-1, 4))
        meta = {"version": FORMAT_VERSION, "options": wanted, "fps": source.fps, "frame_count": count,
                "width": width, "height": height}
        with open(os.path.join(work, "avatar.json"), "w") as f:
            json.dump(meta, f, indent=1)
        if os.path.isdir(folder):
            os.rmdir(folder)  # empty (checked above)
        os.replace(work, folder)
    finally:
        if os.path.isdir(work):
            shutil.rmtree(work)
    return Avatar(folder)


def _open_array(folder, name, shape):
    return np.lib.format.open_memmap(os.path.join(folder, name), mode="w+", dtype=np.uint8, shape=shape)


def _grown(folder, frames, faces, count):
    """Both arrays rewritten with `count` frames (kept or zero-filled)."""
    out = []
    for name, array in (("frames.npy", frames), ("faces.npy", faces)):
        resized = np.lib.format.open_memmap(os.path.join(folder, "resized-" + name), mode="w+",
                                            dtype=np.uint8, shape=(count, *array.shape[1:]))
        n = min(count, len(array))
        resized[:n] = array[:n]
        resized.flush()
        del array
        os.replace(os.path.join(folder, "resized-" + name), os.path.join(folder, name))
        out.append(np.load(os.path.join(folder, name), mmap_mode="r+"))
    return out
