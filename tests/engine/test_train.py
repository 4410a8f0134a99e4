"""Training engine on tiny synthetic data: checkpoints, logging, starting weights, non-finite steps."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

import dgcnet.engine.train as train_module
from dgcnet.config import config_to_dict, load_config
from dgcnet.data import SegmentationDataset
from dgcnet.engine.checkpoint import FORMAT, save_checkpoint
from dgcnet.data.labels import CITYSCAPES
from dgcnet.engine.distributed import _convert_to_all_reduce
from dgcnet.models.layers import AllReduceBatchNorm
from dgcnet.engine.evaluate import EvalResult
from dgcnet.engine.train import build_optimizer, poly_lr, restore_weights, train
from dgcnet.errors import DgcnetError
from dgcnet.models import build_model

# Cityscapes label ids: road, sidewalk, building, car and a void id.
LABEL_IDS = np.array([7, 8, 11, 26, 0], dtype=np.uint8)


def make_dataset(root: Path, n: int = 4, size: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    """n random images with blocky labels under root; returns the list file."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        (root / "img").mkdir(parents=True, exist_ok=True)
        (root / "lab").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / f"img/{i}.png")
        blocks = rng.integers(0, len(LABEL_IDS), (size[0] // 8 + 1, size[1] // 8 + 1))
        label = LABEL_IDS[np.kron(blocks, np.ones((8, 8), dtype=int))[:size[0], :size[1]]]
        Image.fromarray(label).save(root / f"lab/{i}.png")
        lines.append(f"img/{i}.png\tlab/{i}.png")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root / "train.txt"


def tiny_overrides(data_list: Path, save_dir: Path, steps: int = 3, **extra) -> list[str]:
    values = {"model.arch": "dgcnet_r18", "data.data_dir": str(data_list.parent), "data.data_list": str(data_list),
              "data.input_size": "65,65", "data.workers": 0, "train.num_steps": steps, "run.save_dir": str(save_dir),
              "run.device": "cpu", "run.log_every": 1, "run.save_every": steps, "loss.ohem_min_kept": 1000}
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def nan_from_second_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training builds models whose layer4 output is NaN from the second forward pass on."""
    def build_with_nan_from_second_call(arch, num_classes, **kwargs):
        model = build_model(arch, num_classes, **kwargs)
        calls = []

        def poison(module, inputs, output):
            calls.append(1)
            return output * float("nan") if len(calls) >= 2 else output
        model.layer4.register_forward_hook(poison)
        return model

    monkeypatch.setattr(train_module, "build_model", build_with_nan_from_second_call)


def model_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a small shared machine oversubscribed threads make steps 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_list(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))


def test_short_run_writes_checkpoints_config_metrics_and_log(data_list, tmp_path, capsys):
    run = tmp_path / "run"
    config = load_config(None, tiny_overrides(data_list, run, steps=2, **{"run.save_every": 1, "run.keep": 1}))
    records = []
    result = train(config, on_log=records.append)

    assert result.run_dir == run and result.iterations == 2 and result.skipped_steps == 0
    assert sorted(p.name for p in run.glob("checkpoint_*.pt")) == ["checkpoint_0000002.pt"]  # keep 1
    assert result.checkpoint == run / "checkpoint_0000002.pt"
    state = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    assert state["format"] == FORMAT and state["iteration"] == 2 and state["arch"] == "dgcnet_r18"
    assert state["num_classes"] == 19 and len(state["info"]["class_names"]) == 19 and state["info"]["rgb"] is True
    # The facts the model was trained with: eval defaults to its crop as the tile.
    assert state["info"]["crop_size"] == list(config.data.input_size)
    assert state["info"]["tile"] == max(config.data.input_size)
    assert state["config"] == config_to_dict(config) and state["scaler"] is None
    assert set(state["rng"]["ranks"][0]) == {"torch", "cuda", "numpy", "python"}
    assert len(state["optimizer"]["param_groups"]) == 1
    # BN affine parameters are trained (they start at 1 and 0).
    assert not torch.equal(state["model"]["bn1.weight"], torch.ones(128))
    assert not torch.equal(state["model"]["head.dualgcn.bn_adj.bias"], torch.zeros(128))

    assert yaml.safe_load((run / "config.yaml").read_text()) == config_to_dict(config)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines == records and [r["iteration"] for r in lines] == [1, 2]
    assert [r["lr"] for r in lines] == pytest.approx([0.01 * (1 - i / 2) ** 0.9 for i in range(2)])
    assert all(np.isfinite(r["loss"]) and r["seconds_per_iter"] > 0 for r in lines)
    for r in lines:  # the loss is the main term plus 0.4 x the auxiliary one
        assert r["loss"] == pytest.approx(r["loss_main"] + 0.4 * r["loss_aux"], rel=1e-5)
        assert 0 <= r["data_wait"] <= 1 and r["eta_seconds"] >= 0 and r["peak_memory_gb"] > 0
    assert lines[-1]["eta_seconds"] == 0
    out = capsys.readouterr().out
    logged = re.findall(r"^iter = (\d+) of 2 completed, loss = ([0-9.]+), lr=([0-9.e-]+), loss_main=([0-9.]+), "
                        r"loss_aux=([0-9.]+), s/iter=[0-9.]+, data_wait=\d+%, eta=\d+:\d\d:\d\d, peak_mem=[0-9.]+GB$",
                        out, re.M)
    assert [int(i) for i, *_ in logged] == [1, 2]
    assert [float(loss) for _, loss, *_ in logged] == pytest.approx([r["loss"] for r in lines], rel=1e-5)
    assert [float(aux) for *_, aux in logged] == pytest.approx([r["loss_aux"] for r in lines], rel=1e-5)
    # train.log holds every printed line (and a line where each start begins).
    log = (run / "train.log").read_text().splitlines()
    assert [line for line in log if not line.startswith("--- ")] == out.splitlines()
    assert sum(line.startswith("--- ") for line in log) == 1

    # A new run into a folder holding checkpoints is refused; --resume auto at the end has nothing to do.
    with pytest.raises(DgcnetError, match="already holds checkpoints"):
        train(config)
    again = train(load_config(None, tiny_overrides(data_list, run, steps=2, **{"run.resume": "auto"})))
    assert again.checkpoint == result.checkpoint
    resumed = (run / "train.log").read_text()
    assert resumed.startswith("\n".join(log)) and resumed.count("\n--- ") == 1  # appended
    assert f"resumed from {result.checkpoint} at iteration 2" in resumed
    assert torch.equal(model_state(result.checkpoint)["conv1.0.weight"], state["model"]["conv1.0.weight"])


def test_default_loader_workers_share_the_cpus_among_local_processes(monkeypatch):
    import dgcnet.data.dataset as cityscapes

    assert load_config(None, []).data.workers is None  # the default: chosen at start from the CPUs
    monkeypatch.setattr(cityscapes.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert [cityscapes.default_workers(n) for n in (1, 2, 8, 16, 32)] == [15, 7, 1, 1, 1]
    monkeypatch.setattr(cityscapes.os, "sched_getaffinity", lambda pid: set(range(96)), raising=False)
    assert [cityscapes.default_workers(n) for n in (1, 4, 8)] == [16, 16, 11]
    monkeypatch.setattr(cityscapes.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert cityscapes.default_workers() == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_one_loader_serves_every_epoch_from_any_start(data_list, workers):
    """Batches across epoch boundaries, from a mid-epoch start, equal the samples drawn by hand:
    the epoch's shuffle, then each sample with its own epoch's augmentation."""
    from torch.utils.data import DistributedSampler

    dataset = SegmentationDataset(data_list.parent, data_list, train=True, crop_size=(24, 24), seed=5)
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=5)
    batches = train_module._batches(dataset, sampler, batch_size=2, workers=workers, pin_memory=False, start=1)
    got = [next(batches) for _ in range(4)]  # 4 images, batch 2: iterations 1..4 span epochs 0, 1, 2
    batches.close()

    reference = SegmentationDataset(data_list.parent, data_list, train=True, crop_size=(24, 24), seed=5)
    for iteration, (got_epoch, images, labels) in enumerate(got, 1):
        epoch, position = divmod(iteration, 2)
        sampler.set_epoch(epoch)
        reference.set_epoch(epoch)
        expected = [reference[i] for i in list(sampler)[2 * position:2 * position + 2]]
        assert got_epoch == epoch
        assert torch.equal(images, torch.stack([x for x, _, _ in expected]))
        assert torch.equal(labels, torch.stack([y for _, y, _ in expected]))
    assert not torch.equal(got[0][1], got[1][1])


def test_batches_moved_to_the_device_in_the_training_dtype_and_layout():
    from dgcnet.data.transforms import ImageWindow, TrainAugment, WindowBatch

    augment = TrainAugment((8, 8))
    rng = np.random.default_rng(0)
    image, label = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), np.zeros((12, 16), dtype=np.uint8)
    cuts = [augment.cut(image, label, np.random.default_rng(i)) for i in range(2)]
    windows = WindowBatch([ImageWindow(window, crop) for window, crop, _ in cuts])
    batches = iter([(0, torch.rand(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.uint8)),  # as the loader gives them
                    (1, windows, torch.stack([y for _, _, y in cuts]))])
    moved = list(train_module._on_device(batches, torch.device("cpu"), torch.float64, channels_last=True,
                                         augment=augment))
    assert [epoch for epoch, _, _ in moved] == [0, 1]
    for _, images, labels in moved:
        assert images.dtype == torch.float64 and images.is_contiguous(memory_format=torch.channels_last)
        assert images.shape == (2, 3, 8, 8) and labels.dtype == torch.long and labels.shape == (2, 8, 8)
    # The windows became the crops the loader would have made.
    expected = torch.stack([augment(image, label, np.random.default_rng(i))[0] for i in range(2)])
    assert torch.equal(moved[1][1], expected.double())


def test_unset_workers_are_resolved_and_logged(data_list, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train_module, "default_workers", lambda local_processes=1: 0)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    train(load_config(None, tiny_overrides(data_list, tmp_path / "run", steps=1, **{"data.workers": "none"})))
    assert ", 0 loader worker(s) each," in capsys.readouterr().out


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_image_in_training_is_one_line_naming_the_list_line(tmp_path, workers):
    data_list = make_dataset(tmp_path / "data", n=3)
    (tmp_path / "data" / "img" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")  # exists, unreadable
    overrides = tiny_overrides(data_list, tmp_path / "run", steps=6, **{"data.workers": workers})
    with pytest.raises(DgcnetError) as caught:
        train(load_config(None, overrides))
    message = str(caught.value)
    assert message.startswith(f"{data_list}:2: {tmp_path / 'data' / 'img' / '1.png'}: cannot read image (")
    assert "\n" not in message and "Traceback" not in message


def test_bad_data_list_fails_before_training(tmp_path):
    data_list = make_dataset(tmp_path / "data", n=2)
    data_list.write_text(data_list.read_text() + "img/missing.png\tlab/missing.png\n")
    with pytest.raises(DgcnetError, match=r"train.txt:3: .*missing.png: no such file"):
        train(load_config(None, tiny_overrides(data_list, tmp_path / "run")))
    assert not (tmp_path / "run").exists()


def test_poly_lr_and_optimizer_groups():
    assert poly_lr(0.01, 0, 100, 0.9) == 0.01
    assert poly_lr(0.01, 50, 100, 0.9) == pytest.approx(0.01 * 0.5 ** 0.9)
    assert poly_lr(0.01, 99, 100, 0.9) == pytest.approx(0.01 * 0.01 ** 0.9)
    plain = build_model("dgcnet_r18")
    n_bn = sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in plain.modules())
    assert sum(isinstance(m, nn.BatchNorm1d) for m in plain.modules()) == 3
    model = _convert_to_all_reduce(plain)
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules())
    assert sum(isinstance(m, AllReduceBatchNorm) for m in model.modules()) == n_bn  # the 1d ones too
    one = build_optimizer(model, 0.01, 0.9, 5e-4)
    live = {id(p) for p in model.parameters()}
    assert {id(p) for g in one.param_groups for p in g["params"]} == live and len(one.param_groups) == 1
    two = build_optimizer(model, 0.01, 0.9, 5e-4, decay_norm_and_bias=False)
    decayed, exempt = two.param_groups
    assert decayed["weight_decay"] == 5e-4 and exempt["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    exempt_names = {names[id(p)] for p in exempt["params"]}
    assert "bn1.weight" in exempt_names and "head.bottleneck.3.bias" in exempt_names
    assert "head.dualgcn.bn_adj.weight" in exempt_names and "conv1.0.weight" not in exempt_names


def _backbone_file(tmp_path: Path, model: nn.Module) -> tuple[Path, dict]:
    backbone = {k: v.clone() for k, v in model.state_dict().items()
                if not k.startswith(("head.", "dsn.")) and not k.endswith("num_batches_tracked")}
    backbone["fc.weight"], backbone["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    torch.save(backbone, tmp_path / "resnet18-deep.pth")
    return tmp_path / "resnet18-deep.pth", backbone


def test_restore_from_imagenet_backbone_full_weights_and_nothing(tmp_path):
    torch.manual_seed(0)
    source = build_model("dgcnet_r18")
    path, backbone = _backbone_file(tmp_path, source)
    target = build_model("dgcnet_r18")
    summary = restore_weights(target, path)
    n_backbone = len(backbone) - 2
    assert f"loaded {n_backbone} of {len(target.state_dict())} tensors" in summary
    assert "unexpected none" in summary and "2 ImageNet classifier (fc.*)" in summary
    assert "head.*" in summary and "dsn.*" in summary  # reported missing
    assert torch.equal(target.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert not torch.equal(target.head.conva[0].weight, source.head.conva[0].weight)

    torch.save(source.state_dict(), tmp_path / "full.pth")
    full = build_model("dgcnet_r18")
    assert "missing none" in restore_weights(full, tmp_path / "full.pth")
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), source.state_dict().values()))

    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(DgcnetError, match="no tensor matches dgcnet_r18"):
        restore_weights(build_model("dgcnet_r18"), tmp_path / "other.pth")


def test_checkpoint_with_nonfinite_weights_is_never_written(tmp_path):
    model = build_model("dgcnet_r18")
    state = {"format": FORMAT, "model": model.state_dict()}
    state["model"]["head.bottleneck.3.bias"][0] = float("nan")
    with pytest.raises(DgcnetError, match="non-finite.*head.bottleneck.3.bias"):
        save_checkpoint(state, tmp_path / "checkpoint_0000001.pt")
    assert list(tmp_path.iterdir()) == []


def test_nonfinite_loss_in_a_row_stops_with_a_clear_error(data_list, tmp_path, monkeypatch):
    model = build_model("dgcnet_r18")
    with torch.no_grad():
        model.head.bottleneck[3].bias.fill_(float("nan"))
    torch.save(model.state_dict(), tmp_path / "nan.pth")
    # Starting weights holding NaN are refused before training starts.
    with pytest.raises(DgcnetError, match="nan.pth: refused: tensor head.bottleneck.3.bias holds 19 non-finite"):
        train(load_config(None, tiny_overrides(data_list, tmp_path / "run", **{"model.restore_from": tmp_path / "nan.pth"})))

    nan_from_second_forward(monkeypatch)
    with pytest.raises(DgcnetError, match=r"2 non-finite losses or gradients in a row \(last at iteration 3\)"
                                          r".*Last checkpoint: .*checkpoint_0000001.pt"):
        train(load_config(None, tiny_overrides(data_list, tmp_path / "run2", steps=5,
                                               **{"train.max_nonfinite_steps": 2, "run.save_every": 1})))
    assert (tmp_path / "run2" / "train.log").read_text().splitlines()[-1].startswith(
        "stopped: 2 non-finite losses or gradients in a row")


def test_one_nonfinite_step_is_skipped_and_undone(data_list, tmp_path, monkeypatch):
    # The second forward pass produces NaN inside the network: its BN statistics updates must be
    # undone and the step skipped, so the state after iteration 2 equals the state after 1.
    def build_with_nan_on_second_call(arch, num_classes, **kwargs):
        model = build_model(arch, num_classes, **kwargs)
        calls = []

        def poison(module, inputs, output):
            calls.append(1)
            return output * float("nan") if len(calls) == 2 else output
        model.layer4.register_forward_hook(poison)
        return model

    monkeypatch.setattr(train_module, "build_model", build_with_nan_on_second_call)
    run = tmp_path / "run"
    result = train(load_config(None, tiny_overrides(data_list, run, steps=2, **{"run.save_every": 1})))
    assert result.skipped_steps == 1
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_steps"] for r in records] == [0, 1] and records[1]["loss"] is None
    # The third step (a fresh model object: its first forward pass) is finite again.
    train(load_config(None, tiny_overrides(data_list, run, steps=3, **{"run.save_every": 1, "run.resume": "auto"})))
    after1, after2, after3 = (torch.load(run / f"checkpoint_000000{i}.pt", weights_only=True) for i in (1, 2, 3))
    for key, value in after1["model"].items():
        assert torch.equal(value, after2["model"][key]), key
    assert all(torch.equal(a["momentum_buffer"], b["momentum_buffer"])
               for a, b in zip(after1["optimizer"]["state"].values(), after2["optimizer"]["state"].values()))
    assert not torch.equal(after3["model"]["head.conva.1.running_mean"], after2["model"]["head.conva.1.running_mean"])
    assert all(torch.isfinite(v).all() for v in after3["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("amp", [
    "bf16",
    pytest.param("fp16", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason=(
        "needs CUDA: PyTorch's fp16 convolution backward on the CPU takes about a second per layer")))])
def test_mixed_precision_and_channels_last_run(data_list, tmp_path, amp):
    device = "cuda" if amp == "fp16" else "cpu"
    config = load_config(None, tiny_overrides(data_list, tmp_path / "run", steps=2, **{
        "train.amp": amp, "train.channels_last": "true", "run.device": device}))
    result = train(config)
    state = torch.load(result.checkpoint, weights_only=True)
    assert (state["scaler"] is not None) == (amp == "fp16")
    if amp == "fp16":
        assert state["scaler"]["scale"] > 0
    losses = [json.loads(line)["loss"] for line in result.metrics_path.read_text().splitlines()]
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert all(v.dtype != torch.bfloat16 and v.dtype != torch.float16 for v in state["model"].values())


def test_periodic_validation_keeps_the_best_checkpoint(data_list, tmp_path, monkeypatch):
    import dgcnet.engine.evaluate as evaluate_module
    from dgcnet.engine.inference import resolve_tile

    tiles = []
    evaluate = evaluate_module.evaluate

    def recording_evaluate(model, dataset, **kwargs):
        tiles.append(resolve_tile(model, kwargs["tile"], None))
        return evaluate(model, dataset, **kwargs)

    monkeypatch.setattr(evaluate_module, "evaluate", recording_evaluate)
    config = load_config(None, tiny_overrides(data_list, tmp_path / "run", steps=2, **{
        "val.every": 1, "val.data_list": data_list}))
    result = train(config)
    assert tiles == [(65, 44), (65, 44)]  # no val.tile: the training crop's tile, as dgcnet eval
    records = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    val = [r for r in records if "val_miou" in r]
    assert [r["iteration"] for r in val] == [1, 2]
    assert all(0.0 <= r["val_miou"] <= 1.0 for r in val)
    assert result.best_miou == max(r["val_miou"] for r in val) == val[-1]["best_miou"]
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert best["best_miou"] == result.best_miou
    assert best["iteration"] == max(val, key=lambda r: r["val_miou"])["iteration"]
    assert all(set(r["val_iou"]) == set(CITYSCAPES.names) for r in val)
    assert sum(val[-1]["val_iou"].values()) / 19 == pytest.approx(val[-1]["val_miou"])


def test_best_checkpoint_that_is_also_saved_is_a_hard_link_not_a_copy(data_list, tmp_path, monkeypatch):
    scores = iter([0.2, 0.5])  # the final validation is the best
    monkeypatch.setattr(train_module, "_validate", lambda model, *a: (
        EvalResult(next(scores), np.zeros(19), np.zeros((19, 19)), 1.0, 1, 1, 0.0, CITYSCAPES.names), model))
    run = tmp_path / "run"
    train(load_config(None, tiny_overrides(data_list, run, steps=2, **{
        "val.every": 1, "val.data_list": data_list, "run.save_every": 2})))
    assert (run / "best.pt").stat().st_ino == (run / "checkpoint_0000002.pt").stat().st_ino
    assert torch.load(run / "best.pt", weights_only=True)["best_miou"] == 0.5  # saved after validating
    assert not list(run.glob(".*.tmp"))


def test_the_recipe_without_starting_weights_warns_once(data_list, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(train_module.IMAGENET_BACKBONES, "dgcnet_r18", "resnet18-deep.pth")  # as for r101
    train(load_config(None, tiny_overrides(data_list, tmp_path / "run", steps=1)))
    out = capsys.readouterr().out
    assert out.count("warning: training dgcnet_r18 from random weights") == 1
    assert "80.3 mIoU" in out and "resnet18-deep.pth" in out and "--restore-from" in out
    path, _ = _backbone_file(tmp_path, build_model("dgcnet_r18"))
    train(load_config(None, tiny_overrides(data_list, tmp_path / "run2", steps=1, **{"model.restore_from": path})))
    assert "warning" not in capsys.readouterr().out


def test_tensorboard_scalars_and_validation_pictures(data_list, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    train(load_config(None, tiny_overrides(data_list, run, steps=2, **{
        "val.every": 2, "val.data_list": data_list, "val.tile": 65, "run.tensorboard": "true"})))
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("loss", "loss_main", "loss_aux", "lr", "seconds_per_iter", "data_wait", "val_miou",
                "val_iou/road", "val_iou/bicycle"):
        assert tag in tags["scalars"], tag
    assert [e.step for e in events.Scalars("loss")] == [1, 2]
    assert sorted(tags["images"]) == ["val_prediction/0", "val_prediction/1", "val_prediction/2"]
    picture = events.Images("val_prediction/0")[0]
    assert (picture.width, picture.height) == (3 * 48 + 8, 40)  # input | truth | prediction


def test_without_tensorboard_one_line_says_how_to_get_it(data_list, tmp_path, capsys, monkeypatch):
    import dgcnet.engine.runlog as runlog

    monkeypatch.setattr(runlog, "tensorboard_writer_class", lambda: None)
    train(load_config(None, tiny_overrides(data_list, tmp_path / "run", steps=2)))
    out = capsys.readouterr().out
    assert out.count("pip install 'dgcnet[tensorboard]'") == 1 and not (tmp_path / "run" / "tensorboard").exists()
    train(load_config(None, tiny_overrides(data_list, tmp_path / "run2", steps=1, **{"run.tensorboard": "false"})))
    assert "dgcnet[tensorboard]" not in capsys.readouterr().out
    with pytest.raises(DgcnetError, match=r"tensorboard is not installed: pip install 'dgcnet\[tensorboard\]'"):
        train(load_config(None, tiny_overrides(data_list, tmp_path / "run3", steps=1, **{"run.tensorboard": "true"})))
