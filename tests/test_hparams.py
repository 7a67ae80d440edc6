"""hparams.py: published defaults, command-line overrides, file lists."""
import argparse

import pytest

import cli
from hparams import HParams, get_image_list, hparams, parse_overrides


def test_published_defaults():
    assert (hparams.sample_rate, hparams.n_fft, hparams.hop_size, hparams.win_size) == (16000, 800, 200, 800)
    assert (hparams.num_mels, hparams.fmin, hparams.fmax) == (80, 55, 7600)
    assert (hparams.min_level_db, hparams.ref_level_db, hparams.max_abs_value) == (-100, 20, 4.0)
    assert hparams.preemphasize and hparams.preemphasis == 0.97
    assert (hparams.img_size, hparams.fps, hparams.batch_size) == (96, 25, 16)
    assert (hparams.initial_learning_rate, hparams.syncnet_lr) == (1e-4, 1e-4)
    assert (hparams.checkpoint_interval, hparams.eval_interval) == (3000, 3000)
    assert (hparams.syncnet_batch_size, hparams.syncnet_eval_interval,
            hparams.syncnet_checkpoint_interval) == (64, 10000, 10000)
    assert (hparams.syncnet_wt, hparams.disc_wt, hparams.disc_initial_learning_rate) == (0.0, 0.07, 1e-4)


def test_overrides_return_a_new_object():
    new = parse_overrides("batch_size=8, syncnet_wt=0.03,preemphasize=false,fmax=8000")
    assert (new.batch_size, new.syncnet_wt, new.preemphasize, new.fmax) == (8, 0.03, False, 8000.0)
    assert isinstance(new.batch_size, int)
    assert hparams.batch_size == 16 and hparams.syncnet_wt == 0.0
    assert parse_overrides("") is hparams
    with pytest.raises(Exception):
        hparams.batch_size = 3  # frozen: nothing mutates hyperparameters mid-run


@pytest.mark.parametrize("text, message", [
    ("batchsize=8", "unknown hyperparameter 'batchsize'"),
    ("batch_size=eight", "bad value for batch_size"),
    ("batch_size=8.5", "bad value for batch_size"),
    ("preemphasize=maybe", "bad value for preemphasize"),
    ("batch_size", "expected name=value"),
])
def test_bad_overrides_are_clear_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_overrides(text)


def test_cli_turns_bad_overrides_into_user_error():
    parser = argparse.ArgumentParser()
    cli.add_hparams_argument(parser)
    assert cli.hparams_from_args(parser.parse_args(["--hparams", "fps=30"])).fps == 30
    with pytest.raises(cli.UserError, match="unknown hyperparameter 'nope'"):
        cli.hparams_from_args(parser.parse_args(["--hparams", "nope=1"]))


def test_run_main_prints_one_line_and_exits_1(capsys):
    def main(argv):
        raise cli.UserError("clip.mp4: cannot open as a video")
    with pytest.raises(SystemExit) as exit_info:
        cli.run_main(main, [])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "error: clip.mp4: cannot open as a video\n"


def test_get_image_list_reads_lrs2_style_lists(tmp_path):
    lists = tmp_path / "filelists"
    lists.mkdir()
    (lists / "train.txt").write_text("5535415699068794046/00001\n5535415699068794046/00002 NF\n\n")
    assert get_image_list("lrs2_preprocessed", "train", filelists_dir=str(lists)) == [
        "lrs2_preprocessed/5535415699068794046/00001", "lrs2_preprocessed/5535415699068794046/00002"]


def test_values_lists_every_field():
    assert set(hparams.values()) == {f for f in HParams.__dataclass_fields__}
