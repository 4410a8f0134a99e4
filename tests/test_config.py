import pytest
import yaml

import dgcnet.engine.train
from dgcnet.cli import main
from dgcnet.config import (TrainConfig, config_from_dict, config_keys, config_to_dict, load_config, save_config)
from dgcnet.errors import DgcnetError


def test_defaults_are_the_published_recipe():
    c = load_config()  # what the defaults leave to the dataset, resolved for Cityscapes
    assert c.data.dataset == "cityscapes" and c.model.num_classes == 19
    assert c.data.input_size == (832, 832) and c.train.batch_size == 1
    assert (c.data.scale_min, c.data.scale_max) == (0.7, 2.1)
    assert (c.train.lr, c.train.momentum, c.train.weight_decay, c.train.poly_power) == (0.01, 0.9, 5e-4, 0.9)
    assert c.train.num_steps == 60000 and c.train.decay_norm_and_bias
    assert (c.loss.ohem_thresh, c.loss.ohem_min_kept, c.loss.aux_weight) == (0.7, 100000, 0.4)
    assert c.model.arch == "dgcnet_r101" and c.data.rgb and c.train.amp == "off"


def test_yaml_holds_only_what_differs_and_overrides_come_last(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  arch: dgcnet_r18\ntrain:\n  lr: 0.02\n  num_steps: 10\n")
    c = load_config(path, ["train.lr=0.005", ("data.input_size", "65,97"), "data.rgb=0", "run.resume=auto"])
    assert c.model.arch == "dgcnet_r18" and c.train.num_steps == 10
    assert c.train.lr == 0.005 and isinstance(c.train.lr, float)
    assert c.data.input_size == (65, 97) and c.data.rgb is False and c.run.resume == "auto"
    assert c.train.momentum == 0.9  # untouched default


@pytest.mark.parametrize("text,expected", [("832", (832, 832)), ("832,832", (832, 832)), ("769x1025", (769, 1025)),
                                           ("[513, 1025]", (513, 1025))])
def test_input_size_forms(text, expected):
    assert load_config(None, [f"data.input_size={text}"]).data.input_size == expected


@pytest.mark.parametrize("override,hint", [("train.lrr=1", "train.lr"), ("lr=0.1", "train.lr"),
                                           ("data.ohem_thresh=0.5", "loss.ohem_thresh"),
                                           ("trian.num_steps=3", "train.num_steps")])
def test_unknown_key_is_an_error_with_a_hint(override, hint):
    with pytest.raises(DgcnetError, match=f"unknown config key .*did you mean '{hint}'"):
        load_config(None, [override])


def test_unknown_key_in_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  learning_rate: 0.1\n")
    with pytest.raises(DgcnetError, match=r"bad.yaml: unknown config key 'train.learning_rate'"):
        load_config(path)


@pytest.mark.parametrize("override,message", [("train.num_steps=ten", "expected an integer"),
                                              ("train.amp=fp8", "train.amp"), ("model.arch=resnet", "unknown arch"),
                                              ("train.channels_last=maybe", "expected true or false"),
                                              ("val.every=5", "val.data_list"), ("novalue", "KEY=VALUE")])
def test_bad_values_are_errors(override, message):
    with pytest.raises(DgcnetError, match=message):
        load_config(None, [override])


def test_saved_config_round_trips(tmp_path):
    c = load_config(None, ["model.arch=dgcnet_r18", "data.input_size=65", "run.distributed=true", "train.amp=bf16"])
    save_config(c, tmp_path / "config.yaml")
    data = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert data == config_to_dict(c)
    assert config_from_dict(data) == c
    assert len(config_keys()) == sum(len(v) for v in data.values())


def test_cli_maps_port_flags_and_our_flags(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(dgcnet.engine.train, "train", lambda config: seen.setdefault("config", config))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  lr: 0.5\n")
    status = main(["train", "--config", str(cfg), "--data_dir", "/d", "--data_list", "/d/l.txt",
                   "--restore_from", "init.pth", "--input_size", "832,832", "--batch_size", "2", "--rgb", "0",
                   "--learning_rate", "0.02", "--num_steps", "100", "--save_dir", "out", "--run_distribute", "1",
                   "--ohem_thres", "0.6", "--ohem_keep", "5000", "--arch", "dgcnet_r50", "--save-every", "7",
                   "--keep", "2", "--resume", "auto", "--device", "cpu", "--workers", "3", "--seed", "9",
                   "--log-every", "4", "--amp", "fp16", "--channels-last", "--compile",
                   "train.momentum=0.8", "train.lr=0.03"])
    assert status == 0
    c = seen["config"]
    assert (c.data.data_dir, c.data.data_list, c.model.restore_from) == ("/d", "/d/l.txt", "init.pth")
    assert c.data.input_size == (832, 832) and c.train.batch_size == 2 and c.data.rgb is False
    assert c.train.lr == 0.03  # dotted overrides win over flags, flags over the file
    assert c.train.num_steps == 100 and c.run.save_dir == "out" and c.run.distributed is True
    assert (c.loss.ohem_thresh, c.loss.ohem_min_kept) == (0.6, 5000)
    assert c.model.arch == "dgcnet_r50" and (c.run.save_every, c.run.keep, c.run.resume) == (7, 2, "auto")
    assert (c.run.device, c.data.workers, c.run.seed, c.run.log_every) == ("cpu", 3, 9, 4)
    assert c.train.amp == "fp16" and c.train.channels_last and c.train.compile and c.train.momentum == 0.8


def test_cli_unknown_key_is_one_line_error(capsys):
    assert main(["train", "train.lerning_rate=0.1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dgcnet train: error: unknown config key 'train.lerning_rate'")
    assert "did you mean" in err and "\n" not in err
