"""GFPGAN v1.4 (GFPGANv1Clean): published layout, the original code's outputs, bf16, weight-file errors, restore()."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

from checkpoints import CheckpointError
from cli import UserError
from conftest import FIXTURES
from enhancer import load_gfpgan, read_gfpgan_state, restore
import torch.nn.functional as F

from models.gfpgan import GFPGANv1Clean, ModulatedConv2d, StyleConv, recipe_state_dict

PARAMETERS = 86_444_252          # + 699_024 values in the 15 noise buffers = 87.1 M in the file
TOLERANCE = 1e-4                 # of the output's largest magnitude (ENHANCER.md)
BF16_MIN_PSNR_DB = 45.0          # measured 54.9 dB (autocast) on the golden input


@pytest.fixture(scope="module")
def gold():
    return np.load(os.path.join(FIXTURES, "enhancer_gfpgan.npz"))


@pytest.fixture(scope="module")
def net():
    with torch.device("meta"):                   # no random init: the recipe replaces every entry
        model = GFPGANv1Clean()
    model.load_state_dict(recipe_state_dict(model), strict=True, assign=True)
    return model.eval()


@pytest.fixture(scope="module")
def golden_input():
    return torch.from_numpy(np.random.RandomState(7).uniform(-1, 1, (1, 3, 512, 512)).astype(np.float32))


@pytest.fixture(scope="module")
def fp32_run(net, golden_input):
    with torch.inference_mode():
        return net(golden_input)


def test_state_dict_matches_published_layout(net):
    with open(os.path.join(FIXTURES, "enhancer_keys_gfpgan.json")) as f:
        published = json.load(f)
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert len(ours) == len(published) == 285
    assert list(ours) == list(published)
    assert ours == published
    assert sum(p.numel() for p in net.parameters()) == PARAMETERS
    assert sum(np.prod(s) for s in published.values()) == PARAMETERS + 699_024


def test_matches_original_output_and_side_outputs(fp32_run, golden_input, gold):
    out, rgbs = fp32_run
    np.testing.assert_array_equal(golden_input[:, :, :8, :8].numpy(), gold["gfpgan_in_corner"])
    peak = float(gold["gfpgan_out_absmax"])
    assert 100 < peak < 120
    assert out.shape == (1, 3, 512, 512)
    assert [r.shape[-1] for r in rgbs] == [8, 16, 32, 64, 128, 256, 512]
    atol = TOLERANCE * peak
    np.testing.assert_allclose(out[:, :, ::8, ::8].numpy(), gold["gfpgan_out_every8"], atol=atol, rtol=0)
    assert abs(out.abs().max().item() - peak) < atol
    assert abs(out.mean().item() - float(gold["gfpgan_out_mean"])) < atol
    assert abs(out.std(unbiased=False).item() - float(gold["gfpgan_out_std"])) < atol
    for i in range(5):
        np.testing.assert_allclose(rgbs[i].numpy(), gold[f"gfpgan_out_rgb{i}"], atol=atol, rtol=0)
    for i in (5, 6):
        np.testing.assert_allclose(rgbs[i][:, :, ::8, ::8].numpy(), gold[f"gfpgan_out_rgb{i}_every8"],
                                   atol=atol, rtol=0)


def psnr(x, ref):
    """PSNR in dB with the reference's peak-to-peak range as the peak."""
    span = (ref.max() - ref.min()).item()
    return 10 * np.log10(span ** 2 / ((x.float() - ref) ** 2).mean().item())


def test_bf16_autocast_is_close_to_fp32(net, golden_input, fp32_run):
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = net(golden_input, return_rgb=False)
    value = psnr(out, fp32_run[0])
    assert BF16_MIN_PSNR_DB < value < 80          # close, and not fp32 again (autocast took effect)


def per_sample_modulated_conv(conv, x, style):
    """The original's formula, one sample at a time: conv with (W * s) / sqrt(sum (W * s)^2 + 1e-8)."""
    outs = []
    for xi, si in zip(x, style):
        w = conv.weight[0] * conv.modulation(si)[None, :, None, None]
        if conv.demodulate:
            w = w / torch.sqrt(w.square().sum((1, 2, 3), keepdim=True) + 1e-8)
        xi = xi[None]
        if conv.upsample:
            xi = F.interpolate(xi, scale_factor=2, mode="bilinear", align_corners=False)
        outs.append(F.conv2d(xi, w, padding=w.shape[-1] // 2))
    return torch.cat(outs)


@pytest.mark.parametrize("demodulate,upsample", [(True, False), (True, True), (False, False)])
def test_modulated_conv_batched_equals_per_sample(demodulate, upsample):
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, 1 if not demodulate else 3, demodulate=demodulate, upsample=upsample)
    nn.init.normal_(conv.modulation.weight, std=0.05)
    x, style = torch.randn(3, 6, 8, 8), torch.randn(3, 512)
    with torch.no_grad():
        expected = per_sample_modulated_conv(conv, x, style)
        batched = conv(x, style)                                    # activations modulated
        alone = torch.cat([conv(x[i:i + 1], style[i:i + 1]) for i in range(3)])  # weights modulated
    assert batched.shape == (3, 5, 16 if upsample else 8, 16 if upsample else 8)
    torch.testing.assert_close(batched, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(alone, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("n", [1, 2])
def test_blocks_backpropagate(n):
    """In-place ops stay autograd-safe (fine-tuning): gradients of the building blocks, float64."""
    from torch.autograd import gradcheck
    from models.gfpgan import ResBlock, ToRGB
    torch.manual_seed(0)
    block, conv, rgb = ResBlock(3, 4, factor=2).double(), StyleConv(3, 4, upsample=True).double(), ToRGB(3).double()
    nn.init.normal_(conv.modulated_conv.modulation.weight, std=0.1)
    nn.init.ones_(conv.weight)
    x = torch.randn(n, 3, 4, 4, dtype=torch.double, requires_grad=True)
    style = torch.randn(n, 512, dtype=torch.double, requires_grad=True)
    skip = torch.randn(n, 3, 2, 2, dtype=torch.double, requires_grad=True)
    noise = torch.randn(1, 1, 8, 8, dtype=torch.double)
    assert gradcheck(block, (x,), fast_mode=True)
    assert gradcheck(lambda x, s: conv(x, s, noise), (x, style), fast_mode=True)
    assert gradcheck(rgb, (x, style, skip), fast_mode=True)


def test_noise_buffers_by_default_fresh_noise_on_request():
    torch.manual_seed(0)
    conv = StyleConv(4, 4).eval()
    nn.init.ones_(conv.weight)
    x, style, stored = torch.randn(2, 4, 8, 8), torch.randn(2, 512), torch.randn(1, 1, 8, 8)
    a, b = conv(x, style, stored), conv(x, style, stored)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    fresh1, fresh2 = conv(x, style, None), conv(x, style, None)
    assert (fresh1 - a).abs().max() > 0.1 and (fresh1 - fresh2).abs().max() > 0.1
    assert (fresh1[0] - fresh1[1]).abs().max() > 0  # per-sample noise, as the original draws it


# --- weight files -----------------------------------------------------------------------------------

def test_published_layout_loads_strict(net, tmp_path):
    path = tmp_path / "GFPGANv1.4.pth"
    torch.save({"params_ema": net.state_dict()}, path)
    loaded = load_gfpgan(path, "cpu")
    assert not loaded.training
    mine, theirs = loaded.state_dict(), net.state_dict()
    assert list(mine) == list(theirs)
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def one_line_error(path):
    with pytest.raises(CheckpointError) as e:
        load_gfpgan(path, "cpu")
    message = str(e.value)
    assert isinstance(e.value, UserError) and "\n" not in message
    assert message.startswith(str(path))
    return message


def test_params_is_read_when_params_ema_is_absent(tmp_path):
    path = tmp_path / "train.pth"
    torch.save({"params": {"module.toRGB.0.bias": torch.ones(3)}}, path)
    state = read_gfpgan_state(path)
    assert list(state) == ["toRGB.0.bias"] and torch.equal(state["toRGB.0.bias"], torch.ones(3))


def test_missing_file_names_the_download(tmp_path):
    message = one_line_error(tmp_path / "GFPGANv1.4.pth")
    assert "not found" in message and "GFPGANv1.4.pth from https://" in message


def test_empty_and_truncated_files(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    assert "is empty" in one_line_error(empty)
    full = tmp_path / "full.pth"
    torch.save({"params_ema": {"w": torch.arange(10_000.0)}}, full)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(full.read_bytes()[:20_000])
    assert "truncated or corrupt" in one_line_error(truncated)


def test_another_networks_file(tmp_path):
    path = tmp_path / "wav2lip.pth"
    torch.save({"state_dict": {"output_block.1.weight": torch.zeros(1)}, "global_step": 0}, path)
    message = one_line_error(path)
    assert "no 'params_ema' or 'params' entry" in message
    assert "looks like a Wav2Lip generator" in message


def test_wrong_keys_and_shapes(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"params_ema": {"conv_body_first.weight": torch.zeros(16, 3, 1, 1),
                               "extra.weight": torch.zeros(1)}}, path)
    message = one_line_error(path)
    assert "does not fit GFPGANv1Clean" in message
    assert "284 missing keys" in message and "1 unexpected keys (e.g. extra.weight)" in message
    assert "conv_body_first.weight (16, 3, 1, 1) != (32, 3, 1, 1)" in message


# --- restore(): pre- and post-processing around the network ------------------------------------------

class Recorder(nn.Module):
    """Stands in for the network: returns its input (or a constant), records what it was given."""

    def __init__(self, constant=None):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1))
        self.constant, self.calls = constant, []

    def forward(self, x, return_rgb=True, randomize_noise=False):
        self.calls.append(dict(shape=tuple(x.shape), x=x.clone(), autocast=torch.is_autocast_enabled("cpu"),
                               autocast_dtype=torch.get_autocast_dtype("cpu"), noise=randomize_noise))
        return (x if self.constant is None else torch.full_like(x, self.constant)), []


def faces(n, size, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (n, size, size, 3)).astype(np.uint8)


def test_restore_normalises_rgb_and_round_trips_at_512():
    crops, model = faces(3, 512), Recorder()
    out = restore(crops, model, batch_size=2)
    assert out.dtype == np.uint8 and out.shape == crops.shape
    np.testing.assert_array_equal(out, crops)
    assert [c["shape"] for c in model.calls] == [(2, 3, 512, 512), (1, 3, 512, 512)]
    x = model.calls[0]["x"]
    expected_red = (crops[0, :, :, 2] / 255.0 - 0.5) / 0.5            # channel 0 is R (the crop's last)
    np.testing.assert_allclose(x[0, 0].numpy(), expected_red, atol=1e-6)
    assert x.min() >= -1 and x.max() <= 1 and not model.calls[0]["autocast"]


def test_restore_resizes_any_square_size_and_clamps():
    crops = np.stack([np.full((96, 96, 3), v, np.uint8) for v in (10, 128, 250)])
    crops[:, 40:60, 40:60] = (200, 30, 90)
    out = restore(crops, Recorder())
    assert out.shape == (3, 96, 96, 3)
    assert np.abs(out.astype(int) - crops).mean() < 2
    np.testing.assert_array_equal(out[:, :5, :5], crops[:, :5, :5])   # flat regions survive the round trip
    mixed = restore([faces(1, 200)[0], faces(1, 64)[0]], Recorder(constant=3.0))
    assert isinstance(mixed, list) and [m.shape for m in mixed] == [(200, 200, 3), (64, 64, 3)]
    assert all((m == 255).all() for m in mixed)                           # clamped to [-1, 1] first


def test_restore_dtype_and_noise_are_passed_on():
    model = Recorder()
    restore(faces(1, 64), model, dtype=torch.bfloat16, randomize_noise=True)
    call = model.calls[0]
    assert call["autocast"] and call["autocast_dtype"] == torch.bfloat16 and call["noise"]
    cast = Recorder().to(torch.bfloat16)
    restore(faces(1, 64), cast, dtype=torch.bfloat16)
    assert not cast.calls[0]["autocast"] and cast.calls[0]["x"].dtype == torch.bfloat16


def test_restore_rejects_bad_crops():
    with pytest.raises(ValueError, match=r"face 0: expected a square BGR uint8 crop"):
        restore(np.zeros((1, 64, 48, 3), np.uint8), Recorder())
    with pytest.raises(ValueError, match="float32"):
        restore(np.zeros((1, 64, 64, 3), np.float32), Recorder())
