"""Every script is a thin CLI: importing it does no work, and its docstring shows runnable examples."""
import importlib
import sys

import pytest

SCRIPTS = ["inference", "preprocess", "make_filelists", "make_synthetic_dataset",
           "color_syncnet_train", "wav2lip_train", "hq_wav2lip_train"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_import_does_no_work(name, monkeypatch):
    monkeypatch.setattr(sys, "argv", [name, "--not-a-flag"])  # parsing at import would exit
    module = importlib.import_module(name)
    assert callable(module.main)
    assert f"python {name}.py" in module.__doc__


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_exits_cleanly(name, capsys):
    module = importlib.import_module(name)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out
