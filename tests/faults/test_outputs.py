"""Outputs: no command writes over one of its inputs, or over an earlier file without --overwrite;
unusable output locations are one line before any heavy work."""
import shutil

import pytest

from dgcnet.cli import main
from tests.faults.conftest import png_bytes


def run_cli(argv, capsys):
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return status, err


def test_predict_never_writes_over_its_input(tmp_path, capsys, release_weights):
    out = tmp_path / "e" / "outdir"
    photo = out / "color" / "photo.png"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(png_bytes())
    before = photo.read_bytes()
    for overwrite in ([], ["--overwrite"]):
        status, err = run_cli(["predict", "--restore-from", release_weights, photo, "--output-dir", out,
                               "--device", "cpu", *overwrite], capsys)
        assert status == 1 and err.count("\n") == 1
        assert f"{photo}: refused: this output is one of the command's inputs" in err
    assert photo.read_bytes() == before


def test_predict_replaces_earlier_predictions_only_with_overwrite(tmp_path, capsys, release_weights):
    (tmp_path / "a.png").write_bytes(png_bytes())
    argv = ["predict", "--restore-from", release_weights, tmp_path / "a.png", "--output-dir", tmp_path / "out",
            "--device", "cpu", "--mode", "whole", "--workers", "0"]
    assert run_cli(argv, capsys)[0] == 0
    status, err = run_cli(argv, capsys)
    assert status == 1 and f"{tmp_path / 'out' / 'color' / 'a.png'}: prediction already exists" in err
    assert run_cli(argv + ["--overwrite"], capsys)[0] == 0


def test_eval_save_pred_never_writes_over_the_data(tmp_path, capsys, release_weights, trained_run):
    _, data_list = trained_run
    data = tmp_path / "data"
    shutil.copytree(data_list.parent, data)
    # An output folder whose trainIds/ is the image folder: predictions would replace the images.
    (data / "trainIds").symlink_to(data / "img")
    before = (data / "img" / "0.png").read_bytes()
    status, err = run_cli(["eval", "--restore-from", release_weights, "--data-dir", data, "--data-list",
                           data / "train.txt", "--output-dir", data, "--save-pred", "trainids", "--device", "cpu",
                           "--overwrite"], capsys)
    assert status == 1 and "refused: this output is one of the command's inputs" in err
    assert (data / "img" / "0.png").read_bytes() == before


def test_eval_results_of_an_earlier_run_need_overwrite(tmp_path, capsys, release_weights, trained_run):
    _, data_list = trained_run
    (tmp_path / "out" / "result").mkdir(parents=True)
    (tmp_path / "out" / "result" / "result.txt").write_text("mine")
    status, err = run_cli(["eval", "--restore-from", release_weights, "--data-dir", data_list.parent,
                           "--data-list", data_list, "--output-dir", tmp_path / "out", "--device", "cpu"], capsys)
    assert status == 1 and "result.txt: output file already exists" in err
    assert (tmp_path / "out" / "result" / "result.txt").read_text() == "mine"


def test_convert_and_export_never_replace_files_unasked(tmp_path, capsys, release_weights):
    dst = tmp_path / "dst.pth"
    dst.write_bytes(b"precious")
    status, err = run_cli(["convert", release_weights, dst, "--to", "pth"], capsys)
    assert status == 1 and f"{dst}: already exists; pass --overwrite" in err and dst.read_bytes() == b"precious"
    link = tmp_path / "link.safetensors"
    link.symlink_to(release_weights)
    before = release_weights.read_bytes()
    status, err = run_cli(["convert", release_weights, link, "--overwrite"], capsys)
    assert status == 1 and "one of the command's inputs" in err and release_weights.read_bytes() == before
    status, err = run_cli(["export", "--restore-from", release_weights, "--onnx", release_weights, "--overwrite"],
                          capsys)
    assert status == 1 and "one of the command's inputs" in err and release_weights.read_bytes() == before
    assert run_cli(["convert", release_weights, dst, "--to", "pth", "--overwrite"], capsys)[0] == 0
    assert dst.read_bytes() != b"precious"


def _commands(tmp_path, out):
    """Every command that writes, with ``out`` as its output location; inputs that do not exist,
    so that an error about them would show that the output was not checked first."""
    missing = tmp_path / "missing"
    return {
        "train": ["train", "--save_dir", out, "--data_list", missing / "l.txt", "--data_dir", missing,
                  "--arch", "dgcnet_r18", "--device", "cpu"],
        "eval": ["eval", "--restore-from", missing / "w.pt", "--data-dir", missing, "--data-list", missing / "l.txt",
                 "--output-dir", out],
        "predict": ["predict", "--restore-from", missing / "w.pt", tmp_path / "in.png", "--output-dir", out],
        "convert": ["convert", missing / "w.pt", out],
        "export": ["export", "--restore-from", missing / "w.pt", "--onnx", out],
        "lists": ["lists", "--data-dir", missing, "--out", out],
        "synth": ["synth", "--out", out, "--train", "1", "--val", "0", "--size", "8x8"],
    }


FOLDER_OUTPUTS = ("train", "eval", "predict", "lists", "synth")
FILE_OUTPUTS = ("convert", "export")
# Output folders are created with their parents, so a missing parent is only a fault for files.
CASES = ([(c, "file where a folder is expected") for c in FOLDER_OUTPUTS + FILE_OUTPUTS]
         + [(c, case) for c in FILE_OUTPUTS for case in ("missing parent", "folder where a file is expected")])


@pytest.mark.parametrize("command,case", CASES)
def test_unusable_output_locations_are_one_line_before_any_work(tmp_path, capsys, command, case):
    (tmp_path / "in.png").write_bytes(png_bytes())
    (tmp_path / "afile").write_text("x")
    if case == "file where a folder is expected":
        out = tmp_path / "afile" if command in FOLDER_OUTPUTS else tmp_path / "afile" / "out.bin"
        expected = "is a file"
    elif case == "missing parent":
        out, expected = tmp_path / "nofolder" / "out.bin", "does not exist"
    else:
        out, expected = tmp_path, "is a folder"
    status, err = run_cli(_commands(tmp_path, out)[command], capsys)
    assert status == 1 and err.count("\n") == 1, err
    assert str(out) in err and expected in err and "missing" not in err.replace(str(tmp_path), ""), err
