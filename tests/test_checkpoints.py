"""Checkpoint I/O: the published format written and read back, and every bad-file case."""
import os

import pytest
import torch

from checkpoints import (CheckpointError, checkpoint_name, latest_checkpoint, load_checkpoint,
                         load_model, save_checkpoint)
from models import SyncNet_color, Wav2Lip_disc_qual
from synthetic import recipe_state_dict


@pytest.fixture(scope="module")
def disc_state():
    return recipe_state_dict(Wav2Lip_disc_qual())


def assert_same_weights(model, state):
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-format", "zip-format"])
@pytest.mark.parametrize("prefix", ["", "module."], ids=["plain", "module-prefixed"])
def test_published_format_loads_strict(tmp_path, disc_state, legacy, prefix):
    path = tmp_path / "visual_quality_disc.pth"
    torch.save({"state_dict": {prefix + k: v for k, v in disc_state.items()},
                "optimizer": None, "global_step": 357000, "global_epoch": 12},
               path, _use_new_zipfile_serialization=not legacy)
    model = Wav2Lip_disc_qual()
    checkpoint = load_model(model, path)
    assert checkpoint["global_step"] == 357000 and checkpoint["global_epoch"] == 12
    assert_same_weights(model, disc_state)


def test_bare_state_dict_loads(tmp_path, disc_state):
    path = tmp_path / "bare.pth"
    torch.save(disc_state, path, _use_new_zipfile_serialization=False)
    checkpoint = load_checkpoint(path)
    assert set(checkpoint) == {"state_dict"}
    model = Wav2Lip_disc_qual()
    load_model(model, path)
    assert_same_weights(model, disc_state)


def test_save_checkpoint_writes_published_format(tmp_path, disc_state):
    model = Wav2Lip_disc_qual()
    model.load_state_dict(disc_state)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.999))
    model(torch.rand(1, 3, 5, 96, 96)).mean().backward()
    optimizer.step()
    path = tmp_path / "ckpt" / checkpoint_name(3000, prefix="disc_")
    save_checkpoint(path, torch.nn.DataParallel(model), optimizer, 3000, 7, syncnet_wt=0.03)
    assert os.listdir(tmp_path / "ckpt") == ["disc_checkpoint_step000003000.pth"]
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state_dict", "optimizer", "global_step", "global_epoch", "img_size", "syncnet_wt"}
    assert raw["img_size"] == 96
    assert not any(k.startswith("module.") for k in raw["state_dict"])
    assert (raw["global_step"], raw["global_epoch"], raw["syncnet_wt"]) == (3000, 7, 0.03)
    fresh = torch.optim.Adam(Wav2Lip_disc_qual().parameters(), lr=1e-4, betas=(0.5, 0.999))
    fresh.load_state_dict(raw["optimizer"])
    assert fresh.state_dict()["state"][0]["step"].item() == 1
    reloaded = Wav2Lip_disc_qual()
    load_model(reloaded, path)
    assert_same_weights(reloaded, model.state_dict())


def test_latest_checkpoint(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    for step in (1, 3000, 27000):
        (tmp_path / checkpoint_name(step)).write_bytes(b"x")
    (tmp_path / checkpoint_name(90000, prefix="disc_")).write_bytes(b"x")
    assert latest_checkpoint(tmp_path).endswith("checkpoint_step000027000.pth")
    assert latest_checkpoint(tmp_path, prefix="disc_").endswith("disc_checkpoint_step000090000.pth")


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"nowhere\.pth: checkpoint file not found"):
        load_checkpoint(tmp_path / "nowhere.pth")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pth: checkpoint file is empty"):
        load_checkpoint(path)


@pytest.mark.parametrize("legacy", [True, False])
def test_truncated_file(tmp_path, disc_state, legacy):
    path = tmp_path / "cut.pth"
    torch.save({"state_dict": disc_state}, path, _use_new_zipfile_serialization=not legacy)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pth: not a readable PyTorch checkpoint"):
        load_checkpoint(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match=r"garbage\.pth: not a readable PyTorch checkpoint"):
        load_checkpoint(path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match=r"list\.pth: expected a dict of tensors, found list"):
        load_checkpoint(path)


def test_wrong_network(tmp_path):
    path = tmp_path / "lipsync_expert.pth"
    torch.save({"state_dict": SyncNet_color().state_dict()}, path)
    with pytest.raises(CheckpointError) as error:
        load_model(Wav2Lip_disc_qual(), path)
    message = str(error.value)
    assert message.startswith(f"{path}: does not fit Wav2Lip_disc_qual:")
    assert "missing keys" in message and "looks like a SyncNet_color" in message
    assert "\n" not in message


def test_wrong_shapes(tmp_path, disc_state):
    path = tmp_path / "shapes.pth"
    bad = dict(disc_state)
    bad["binary_pred.0.weight"] = torch.zeros(2, 512, 1, 1)
    torch.save({"state_dict": bad}, path)
    with pytest.raises(CheckpointError, match=r"1 shape mismatches \(e\.g\. binary_pred\.0\.weight "
                                              r"\(2, 512, 1, 1\) != \(1, 512, 1, 1\)\)"):
        load_model(Wav2Lip_disc_qual(), path)


def test_map_location_cpu(tmp_path, disc_state):
    path = tmp_path / "d.pth"
    torch.save({"state_dict": disc_state}, path)
    state = load_checkpoint(path, device="cpu")["state_dict"]
    assert all(v.device.type == "cpu" for v in state.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_map_location_cuda(tmp_path, disc_state):
    path = tmp_path / "d.pth"
    torch.save({"state_dict": disc_state}, path)
    model = Wav2Lip_disc_qual().to("cuda")
    load_model(model, path, device=torch.device("cuda", 0))
    assert next(model.parameters()).device.type == "cuda"
