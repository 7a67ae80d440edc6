"""The three networks: published state-dict layout and the reference's outputs."""
import json
import os

import numpy as np
import pytest
import torch

from conftest import FIXTURES
from models import SyncNet_color, Wav2Lip, Wav2Lip_disc_qual
from synthetic import recipe_model

NETWORKS = {"wav2lip": Wav2Lip, "syncnet_color": SyncNet_color, "wav2lip_disc_qual": Wav2Lip_disc_qual}
PARAMETERS = {"wav2lip": 36_298_035, "syncnet_color": 16_435_072, "wav2lip_disc_qual": 14_113_793}


@pytest.fixture(scope="module")
def published_layout():
    with open(os.path.join(FIXTURES, "checkpoint_keys.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {name: recipe_model(cls()) for name, cls in NETWORKS.items()}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_state_dict_matches_published_layout(name, published_layout, nets):
    state = nets[name].state_dict()
    ours = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in state.items()]
    assert ours == published_layout[name]["state_dict"]
    assert sum(p.numel() for p in nets[name].parameters()) == PARAMETERS[name]
    assert published_layout[name]["parameters"] == PARAMETERS[name]


def t(array):
    return torch.from_numpy(array)


@torch.no_grad()
def test_wav2lip_matches_reference(nets, golden):
    out = nets["wav2lip"](t(golden["wav2lip_in_mel"]), t(golden["wav2lip_in_face"]))
    assert out.shape == (2, 3, 96, 96)
    np.testing.assert_allclose(out.numpy(), golden["wav2lip_out"], atol=1e-4, rtol=0)


@torch.no_grad()
def test_wav2lip_sequence_matches_reference(nets, golden):
    out = nets["wav2lip"](t(golden["wav2lip_in_mel5"]), t(golden["wav2lip_in_face5"]))
    assert out.shape == (1, 3, 5, 96, 96)
    np.testing.assert_allclose(out.numpy(), golden["wav2lip_out5"], atol=1e-4, rtol=0)


@torch.no_grad()
def test_wav2lip_sequence_equals_frame_by_frame(nets, golden):
    mel5, face5 = t(golden["wav2lip_in_mel5"]), t(golden["wav2lip_in_face5"])
    seq = nets["wav2lip"](mel5, face5)
    for i in range(5):
        frame = nets["wav2lip"](mel5[:, i], face5[:, :, i])
        np.testing.assert_allclose(seq[:, :, i].numpy(), frame.numpy(), atol=1e-5)


@torch.no_grad()
def test_wav2lip_encode_decode_is_forward(nets, golden):
    g = nets["wav2lip"]
    mel, face = t(golden["wav2lip_in_mel"]), t(golden["wav2lip_in_face"])
    split = g.decode(g.audio_encoder(mel), g.encode_face(face))
    np.testing.assert_array_equal(split.numpy(), g(mel, face).numpy())


@torch.no_grad()
def test_syncnet_matches_reference(nets, golden):
    a, v = nets["syncnet_color"](t(golden["syncnet_in_mel"]), t(golden["syncnet_in_face"]))
    np.testing.assert_allclose(a.numpy(), golden["syncnet_out_audio"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(v.numpy(), golden["syncnet_out_face"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(a.norm(dim=1).numpy(), [1, 1], atol=1e-5)


@torch.no_grad()
def test_discriminator_matches_reference(nets, golden):
    out = nets["wav2lip_disc_qual"](t(golden["disc_in"]))
    assert out.shape == (10, 1)
    np.testing.assert_allclose(out.numpy(), golden["disc_out"], atol=1e-4, rtol=0)


@torch.no_grad()
def test_discriminator_perceptual_loss_on_cpu(nets, golden):
    disc = nets["wav2lip_disc_qual"]
    fake = t(golden["disc_in"])
    loss = disc.perceptual_forward(fake)
    assert loss.device.type == "cpu"
    expected = -np.log(golden["disc_out"]).mean()
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)


def test_generator_output_in_unit_range_and_trains():
    torch.manual_seed(0)
    g = Wav2Lip()
    out = g(torch.randn(2, 1, 80, 16), torch.rand(2, 6, 96, 96))
    assert out.shape == (2, 3, 96, 96)
    assert 0 <= out.min().item() and out.max().item() <= 1
    out.mean().backward()
    assert g.face_encoder_blocks[0][0].conv_block[0].weight.grad is not None
