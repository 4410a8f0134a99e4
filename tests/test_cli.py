import subprocess
import sys

import pytest

import dgcnet
from dgcnet.cli import main


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert dgcnet.__version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "info" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "dgcnet", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"dgcnet {dgcnet.__version__}"


def test_info_r101_counts(capsys):
    assert main(["info", "--arch", "dgcnet_r101", "--size", "832x832"]) == 0
    out = capsys.readouterr().out
    assert "72,506,598" in out
    assert "67,776,723" in out
    assert "1.532 TFLOP" in out


def test_info_rejects_bad_size(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["info", "--size", "83a"])
    assert exit_info.value.code == 2
    assert "expected a size" in capsys.readouterr().err
