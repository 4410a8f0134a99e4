"""Configs that would silently change the run: keys given twice, values outside their range,
and values that pass the types but would crash later. One line each, naming the file and line
or the key, before anything heavy."""
import pytest

from dgcnet.config import load_config
from dgcnet.errors import DgcnetError


@pytest.mark.parametrize("text,line,what", [
    ("train:\n  lr: 0.1\nmodel:\n  arch: dgcnet_r18\ntrain:\n  num_steps: 5\n", 5, "'train' given twice (first at line 1)"),
    ("train:\n  lr: 0.1\n  lr: 0.2\n", 3, "'lr' given twice (first at line 2)"),
    ("run: {seed: 1, seed: 2}\n", 1, "'seed' given twice"),
])
def test_keys_given_twice_name_the_file_and_line(tmp_path, text, line, what):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(DgcnetError) as error:
        load_config(path)
    assert str(error.value) == f"{path}:{line}: {what}" or str(error.value).startswith(f"{path}:{line}: {what}")


# Values that pass the types but change the run's meaning or crash later (some only at the
# first validation, after training ran).
BAD_VALUES = {
    "loss.ohem_thresh=.nan": "loss.ohem_thresh is a probability in (0, 1], got nan",
    "loss.ohem_thresh=1.5": "loss.ohem_thresh is a probability",
    "train.poly_power=-1": "train.poly_power must not be negative",
    "train.momentum=-1": "train.momentum must be in [0, 1)",
    "train.weight_decay=-1": "train.weight_decay must not be negative",
    "train.lr=.inf": "train.lr must be a positive number, got inf",
    "run.seed=-1": "run.seed must be in 0..2^32-1",
    "run.seed=4294967296": "run.seed must be in 0..2^32-1",
    "val.mode=foo": "val.mode: expected one of sliding, whole, got 'foo'",
    "data.resize_on=gpu": "data.resize_on: expected one of auto, loader, device, got 'gpu'",
    "val.tile=0": "val.tile must be at least 1",
    "data.input_size=99999999x99999999": "data.input_size 99999999x99999999: the input alone would need ",
    "model.aux_dropout=.nan": "model.aux_dropout must be in [0, 1)",
}


@pytest.mark.parametrize("override", BAD_VALUES)
def test_values_that_would_change_or_crash_the_run_are_refused(override):
    with pytest.raises(DgcnetError) as error:
        load_config(None, [override])
    assert str(error.value).startswith(BAD_VALUES[override])


def test_crop_too_small_for_batch_norm_is_refused_before_training(tmp_path, trained_run):
    from dgcnet.engine.train import train
    from tests.faults.conftest import tiny_overrides

    _, data_list = trained_run
    config = load_config(None, tiny_overrides(data_list, tmp_path / "run", **{"data.input_size": "16x16",
                                                                              "train.batch_size": 1}))
    with pytest.raises(DgcnetError, match="data.input_size 16x16 with train.batch_size 1 is too small for dgcnet_r18"):
        train(config)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv,message", [
    (["--scales", "nan"], "argument --scales: expected numbers in (0, 4]"),
    (["--scales", "1,inf"], "argument --scales: expected numbers in (0, 4]"),
    (["--scales", "1e4"], "argument --scales: expected numbers in (0, 4]"),
    (["--device", "meta"], "'meta'"),
])
def test_inference_flags_out_of_range(tmp_path, capsys, release_weights, argv, message):
    from dgcnet.cli import main
    from tests.faults.conftest import png_bytes

    (tmp_path / "a.png").write_bytes(png_bytes())
    try:
        status = main(["predict", "--restore-from", str(release_weights), str(tmp_path / "a.png"),
                       "--output-dir", str(tmp_path / "out"), *argv])
    except SystemExit as exit:  # argparse
        status = exit.code
    err = capsys.readouterr().err
    assert status in (1, 2) and message in err
    assert not (tmp_path / "out").exists()


def test_absurd_sizes_name_the_memory_they_need(capsys):
    from dgcnet.cli import main

    with pytest.raises(SystemExit):
        main(["export", "--restore-from", "dgcnet_r18", "--onnx", "x.onnx", "--size", "99999999x99999999"])
    assert "the input alone would need 111,758,706.7 GiB" in capsys.readouterr().err


@pytest.mark.parametrize("change", ["data.input_size=97,97", "train.lr=0.02", "data.data_list={other}"])
def test_resume_with_other_settings_is_refused_and_keeps_the_config(tmp_path, trained_run, change):
    import shutil

    from dgcnet.engine.train import train
    from tests.faults.conftest import tiny_overrides

    result, data_list = trained_run
    run = tmp_path / "run"
    shutil.copytree(result.run_dir, run)
    other = tmp_path / "other.txt"
    shutil.copy(data_list, other)
    key, value = change.format(other=other).split("=")
    before = (run / "config.yaml").read_text()
    overrides = tiny_overrides(data_list, run, steps=3, **{"run.resume": "auto", key: value})
    with pytest.raises(DgcnetError, match=f"checkpoint_0000002.pt: the run was trained with {key}="):
        train(load_config(None, overrides))
    assert (run / "config.yaml").read_text() == before
    assert not (run / "checkpoint_0000003.pt").exists()
    # Asked for explicitly: it continues, and the run's earlier config is kept beside the new one.
    train(load_config(None, overrides + ["run.allow_changes=true"]))
    assert (run / "config_until_2.yaml").read_text() == before
    assert (run / "checkpoint_0000003.pt").is_file()


def test_resume_may_change_where_samples_are_made(tmp_path, trained_run):
    """The store and the device resize give the same samples: resuming with them is no change."""
    import shutil

    from dgcnet.engine.train import train
    from tests.faults.conftest import tiny_overrides

    result, data_list = trained_run
    run = tmp_path / "run"
    shutil.copytree(result.run_dir, run)
    train(load_config(None, tiny_overrides(data_list, run, steps=3, **{
        "run.resume": "auto", "data.prepared": "none", "data.resize_on": "device"})))
    assert (run / "checkpoint_0000003.pt").is_file()  # not refused, and no run.allow_changes needed


def test_library_refuses_devices_the_engines_do_not_run_on():
    from dgcnet.engine.distributed import resolve_device

    with pytest.raises(DgcnetError, match="device 'meta' is not supported"):
        resolve_device("meta")
