"""Training: the published recipe on the CPU, one GPU, or several GPUs / machines through torchrun.

:func:`train` runs :func:`setup_training` (seeds, data, model with its starting weights and
synchronised BN, optimizer, resume), which returns the run's state (:class:`TrainingRun`), then
the loop in ``_train``: poly learning rate, :func:`train_step`, log, validate, checkpoint
(:class:`~dgcnet.engine.checkpoint.Checkpointer`), stop on a signal. Every sample's augmentation
comes from (seed, epoch, index) and every process's random generators are saved in the
checkpoints, so a resumed run continues exactly as the uninterrupted run would have.
"""
from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dgcnet.config import LossConfig, TrainConfig, apply_dataset_defaults, config_to_dict, resize_on_device, save_config
from dgcnet.data.dataset import ReportErrors, SegmentationDataset, collate, default_workers
from dgcnet.data.transforms import TrainAugment, WindowBatch
from dgcnet.data.classes import load_class_file
from dgcnet.data.datasets import describe_classes, get_dataset
from dgcnet.data.labels import ClassInfo
from dgcnet.engine import checkpoint as ckpt
from dgcnet.engine import distributed, precision
from dgcnet.engine.distributed import DistEnv
from dgcnet.engine.heap import loader_worker_init
from dgcnet.engine.runlog import RunLogger, StepMeter, log_line, peak_memory_gb, validation_pictures
from dgcnet.engine.runlock import RunLock
from dgcnet.engine.stopping import StopSignals, TrainingStopped, ignore_stop_signals
from dgcnet.errors import DgcnetError
from dgcnet.losses import dgcnet_loss_terms
from dgcnet.models import DGCNet, build_model, classes_info

if TYPE_CHECKING:
    from dgcnet.engine.evaluate import EvalResult


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path            # the final checkpoint
    iterations: int
    final_loss: float | None    # mean loss over the last log interval
    skipped_steps: int          # steps skipped for a non-finite loss or gradient
    best_miou: float | None     # best validation mIoU (None without validation)
    metrics_path: Path          # one JSON object per line: training records and validation records


def poly_lr(base_lr: float, iteration: int, total: int, power: float) -> float:
    """The learning rate of (0-based) ``iteration``: base * (1 - i / total) ^ power."""
    return base_lr * (1.0 - iteration / total) ** power


def build_optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float,
                    decay_norm_and_bias: bool = True) -> torch.optim.SGD:
    """SGD over every parameter, BatchNorm affine parameters included. Build it after any BatchNorm
    conversion, so that it holds the parameters that are actually trained."""
    params = [p for p in model.parameters() if p.requires_grad]
    if decay_norm_and_bias:
        groups: list[dict[str, Any]] = [{"params": params}]
    else:  # BatchNorm weights/biases and conv biases are the 1-d parameters
        groups = [{"params": [p for p in params if p.dim() > 1]},
                  {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)


def restore_weights(model: DGCNet, path: str | Path) -> str:
    """Load starting weights by name: an ImageNet deep-stem backbone (its fc.* skipped), a full
    DGCNet state dict, a training checkpoint, or any file ``dgcnet convert`` reads. Returns a
    summary; a file of which nothing matches the model is an error."""
    from dgcnet.formats.convert import match_to_model, read_weights, summarize_names

    weights = read_weights(path)
    expected = model.state_dict()
    # Tensors whose shape differs (a classifier for other classes) are left out, not an error.
    loaded, mismatched = match_to_model(weights.tensors, model)
    unexpected = [k for k in weights.tensors if k not in expected]
    if not loaded:
        raise DgcnetError(f"{path}: no tensor matches {model.arch} ({len(weights.tensors)} tensors in the file, "
                          f"e.g. {next(iter(weights.tensors), 'none')})")
    model.load_state_dict(loaded, strict=False)
    missing = [k for k in expected if k not in loaded]
    lines = [f"restore_from {path} ({weights.source_format}): loaded {len(loaded)} of {len(expected)} tensors",
             f"  missing {summarize_names(missing)}", f"  unexpected {summarize_names(unexpected)}"]
    if mismatched:
        lines.append(f"  shape differs, not loaded: {len(mismatched)}: "
                     + ", ".join(f"{name} {file} vs {model}" for name, file, model in mismatched[:3]))
    if weights.skipped:
        lines.append("  skipped " + ", ".join(f"{n} {kind}" for kind, n in sorted(weights.skipped.items())))
    return "\n".join(lines)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _EpochSamples(Dataset):
    """The training samples keyed by (epoch, index): one loader, and its workers, serve every epoch,
    so no epoch starts by waiting for freshly started workers."""

    def __init__(self, dataset: SegmentationDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


def _collate(items: list[tuple[Any, str | None]]) -> list | str:
    """A batch, or the message of its first unreadable sample (items as ReportErrors gives them)."""
    for _, error in items:
        if error is not None:
            return error
    return collate([item for item, _ in items])


def _batch_keys(sampler: DistributedSampler, batch_size: int, start: int) -> Iterator[list[tuple[int, int]]]:
    """(epoch, index) keys of the batches of iterations start, start+1, ...: the shuffle comes from
    (seed, epoch), so resuming mid-epoch skips exactly the batches already seen."""
    per_epoch = len(sampler) // batch_size
    epoch, position = divmod(start, per_epoch)
    while True:
        sampler.set_epoch(epoch)
        indices = list(sampler)
        for b in range(position, per_epoch):
            yield [(epoch, i) for i in indices[b * batch_size:(b + 1) * batch_size]]
        epoch, position = epoch + 1, 0


def _init_loader_worker(worker_id: int) -> None:
    loader_worker_init(worker_id)
    ignore_stop_signals(worker_id)  # the main process decides when training stops


def _batches(dataset: SegmentationDataset, sampler: DistributedSampler, batch_size: int, workers: int,
             pin_memory: bool, start: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(epoch, images, labels) for iterations start, start+1, ...; each sample comes from
    (seed, epoch, index) alone, whatever the workers."""
    per_epoch = len(sampler) // batch_size
    # Its own generator: creating loader workers must not consume the global (dropout) RNG.
    loader = DataLoader(ReportErrors(_EpochSamples(dataset)), batch_sampler=_batch_keys(sampler, batch_size, start),
                        num_workers=workers, collate_fn=_collate, pin_memory=pin_memory, generator=torch.Generator(),
                        worker_init_fn=_init_loader_worker)
    for iteration, batch in enumerate(loader, start):
        if isinstance(batch, str):
            raise DgcnetError(batch)
        images, labels, _ = batch
        yield iteration // per_epoch, images, labels


def _on_device(batches: Iterator[tuple[int, torch.Tensor | WindowBatch, torch.Tensor]], device: torch.device,
               dtype: torch.dtype, channels_last: bool, augment: TrainAugment
               ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """The batches moved to ``device``, image windows resized into crops there. On CUDA the next
    batch is copied (and its crops finished) on a side stream while the current step runs, so
    that work is off the step's path."""
    def move(batch: tuple[int, torch.Tensor | WindowBatch, torch.Tensor]) -> tuple[int, torch.Tensor, torch.Tensor]:
        epoch, images, labels = batch
        if isinstance(images, WindowBatch):
            images = images.images(augment, device)
        images = images.to(device, dtype=dtype, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return epoch, images, labels.to(device, non_blocking=True).long()  # uint8 from the loader

    if device.type != "cuda":
        yield from map(move, batches)
        return
    copy_stream = torch.cuda.Stream(device)
    with torch.cuda.stream(copy_stream):
        upcoming = move(next(batches))
    while True:
        step_stream = torch.cuda.current_stream(device)
        step_stream.wait_stream(copy_stream)
        epoch, images, labels = upcoming
        # Allocated on the copy stream, used on the step's: not to be reused before the step is done.
        images.record_stream(step_stream)
        labels.record_stream(step_stream)
        with torch.cuda.stream(copy_stream):
            upcoming = move(next(batches))
        yield epoch, images, labels


def _resume_path(resume: str | None, run_dir: Path) -> Path | None:
    if resume is None:
        if ckpt.list_checkpoints(run_dir):
            raise DgcnetError(f"{run_dir}: already holds checkpoints; continue with --resume auto, "
                              f"or choose another --save_dir")
        return None
    if resume == "auto":
        return ckpt.latest_checkpoint(run_dir)
    return Path(resume)


# Settings that may differ when resuming: where and how fast it runs, not what it learns.
RESUMABLE_CHANGES = {"run.resume", "run.save_dir", "run.device", "run.distributed", "run.log_every", "run.save_every",
                     "run.keep", "run.allow_changes", "run.tensorboard", "data.workers", "train.num_steps",
                     "data.prepared", "data.resize_on",  # the same samples either way
                     "train.compile", "train.channels_last",
                     "train.max_nonfinite_steps", "val.every", "val.data_list", "val.data_dir", "val.mode", "val.tile"}


def changed_settings(state: dict[str, Any], config: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """{key: (checkpoint's value, this config's)} of the settings that change what a resumed run learns."""
    saved = state.get("config")
    if not isinstance(saved, dict):
        return {}
    now = config_to_dict(config)
    return {f"{section}.{key}": (saved.get(section, {}).get(key), value)
            for section, values in now.items() for key, value in values.items()
            if f"{section}.{key}" not in RESUMABLE_CHANGES and isinstance(saved.get(section), dict)
            and key in saved[section] and saved[section][key] != value}


def _keep_earlier_config(path: Path, config: TrainConfig, start: int) -> None:
    """A resumed run with other settings keeps the earlier config.yaml as config_until_<start>.yaml."""
    try:
        earlier = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return
    now = config_to_dict(config)
    if isinstance(earlier, dict) and isinstance(earlier.get("run"), dict):
        earlier["run"].pop("resume", None)
        now["run"].pop("resume", None)
    if earlier != now:
        os.replace(path, path.with_name(f"config_until_{start}.yaml"))


def _check_resume(state: dict[str, Any], config: TrainConfig, path: Path) -> None:
    """A resumed run must be the run the checkpoint belongs to, and have iterations left."""
    cfg_model = config.model
    if (state["arch"], state["num_classes"]) != (cfg_model.arch, cfg_model.num_classes):
        raise DgcnetError(f"{path}: a {state['arch']} checkpoint with {state['num_classes']} classes, "
                          f"but the config says {cfg_model.arch} with {cfg_model.num_classes}")
    changed = changed_settings(state, config)
    if changed and not config.run.allow_changes:
        key, (old, new) = next(iter(changed.items()))
        more = f" (and {len(changed) - 1} more: {', '.join(list(changed)[1:4])})" if len(changed) > 1 else ""
        raise DgcnetError(f"{path}: the run was trained with {key}={old!r}, this config says {new!r}{more}; resume "
                          f"with the run's settings (its config.yaml), or pass run.allow_changes=true")
    if state["iteration"] > config.train.num_steps:
        raise DgcnetError(f"{path}: the checkpoint is at iteration {state['iteration']}, but train.num_steps is "
                          f"{config.train.num_steps}: the run is past its end; give --num_steps {state['iteration']} or more")


def _check_batch_norm(arch: str, num_classes: int, batch_size: int, crop: tuple[int, int]) -> None:
    """A forward pass on the meta device (shapes only, no memory or compute): a crop so small
    that a BatchNorm would see one value per channel fails here, not at the first step."""
    with torch.device("meta"):
        model = build_model(arch, num_classes).train()
        try:
            model(torch.empty(batch_size, 3, *crop))
        except (ValueError, RuntimeError) as error:
            raise DgcnetError(f"data.input_size {crop[0]}x{crop[1]} with train.batch_size {batch_size} is too small "
                              f"for {arch}: {str(error).splitlines()[0]}; use a larger crop or batch") from None


def train(config: TrainConfig, on_log: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train DGCNet as ``config`` describes; launch once per process (torchrun for several).

    ``on_log`` receives every record written to ``metrics.jsonl`` (main process only).
    Returns where the run is and how it ended.
    """
    apply_dataset_defaults(config)  # a config built in code may leave them to the dataset
    env = distributed.setup(config.run.device, config.run.distributed)
    try:
        # One training per run folder: a second one would overwrite the first one's checkpoints.
        with RunLock(config.run.save_dir) if env.is_main else contextlib.nullcontext():
            runlog = RunLogger(Path(config.run.save_dir), env.is_main, config.run.tensorboard, on_record=on_log)
            try:
                return _train(config, env, runlog)
            except BaseException as error:
                runlog.failed(error)  # train.log says why the run stopped
                raise
            finally:
                runlog.close()
    finally:
        distributed.cleanup(env)


# The ImageNet deep-stem backbones the authors published, by architecture (docs/weights.md).
IMAGENET_BACKBONES = {"dgcnet_r101": "resnet101-deep.pth", "dgcnet_r50": "resnet50-deep.pth"}


@dataclass
class TrainingRun:
    """What a run holds from one iteration to the next, as :func:`setup_training` leaves it."""
    config: TrainConfig
    env: DistEnv
    run_dir: Path
    model: DGCNet                        # the weights: what checkpoints and validation read
    net: nn.Module                       # what the steps run: the model, or DDP around it
    optimizer: torch.optim.SGD
    scaler: torch.amp.GradScaler         # enabled for fp16 only
    forward_loss: Callable[..., tuple[torch.Tensor, torch.Tensor]]  # forward_loss, compiled or not
    amp_dtype: torch.dtype | None
    buffers: list[torch.Tensor]          # BatchNorm running statistics, and their copy before the step
    buffers_before_step: list[torch.Tensor]
    loaded: Iterator[tuple[int, torch.Tensor, torch.Tensor]]   # (epoch, images, labels) from the loader
    batches: Iterator[tuple[int, torch.Tensor, torch.Tensor]]  # the same on the device
    val_dataset: SegmentationDataset | None
    workers: int                         # loader workers per process
    start: int                           # the first iteration to run
    best_miou: float | None
    resume_from: Path | None


def _datasets(config: TrainConfig, env: DistEnv, say: Callable[[str], None]
              ) -> tuple[ClassInfo, SegmentationDataset, DistributedSampler, SegmentationDataset | None]:
    """The classes, the training data and its sampler, the validation data. The list's cheap
    checks (syntax, files exist) run here, before anything heavy."""
    cfg_data, cfg_model, cfg_run, cfg_train = config.data, config.model, config.run, config.train
    if cfg_data.data_list is None:
        raise DgcnetError("no training list: set data.data_list (--data_list)")
    classes = load_class_file(cfg_data.classes) if cfg_data.classes else get_dataset(cfg_data.dataset).classes
    if classes.num_classes != cfg_model.num_classes:
        raise DgcnetError(f"{cfg_data.classes or cfg_data.dataset} has {classes.num_classes} classes but "
                          f"model.num_classes is {cfg_model.num_classes}; set model.num_classes={classes.num_classes}")
    dataset = SegmentationDataset(cfg_data.data_dir, cfg_data.data_list, classes=classes, train=True,
                                  crop_size=cfg_data.input_size,
                                  scale=cfg_data.scale, scale_range=(cfg_data.scale_min, cfg_data.scale_max),
                                  mirror=cfg_data.mirror, rgb=cfg_data.rgb, seed=cfg_run.seed,
                                  prepared=cfg_data.prepared,
                                  resize_on_device=resize_on_device(cfg_data.resize_on, env.device.type))
    where = "on the training device" if dataset.resize_on_device else "in the loader workers"
    say(f"training data: {dataset.source}; crops resized {where}")
    sampler = DistributedSampler(dataset, num_replicas=env.world_size, rank=env.rank, shuffle=True,
                                 seed=cfg_run.seed)
    if len(sampler) < cfg_train.batch_size:
        raise DgcnetError(f"{cfg_data.data_list}: {len(dataset)} samples, fewer than one global batch "
                          f"({env.world_size} x {cfg_train.batch_size})")
    val_dataset = None
    if config.val.every:
        val_dataset = SegmentationDataset(config.val.data_dir or cfg_data.data_dir, config.val.data_list,
                                          classes=classes, rgb=cfg_data.rgb)
    return classes, dataset, sampler, val_dataset


def _build_model(config: TrainConfig, env: DistEnv, classes: ClassInfo, resumed: bool,
                 say: Callable[[str], None]) -> DGCNet:
    """The model with its starting weights (unless resumed), synchronised BN, on the device."""
    cfg_model = config.model
    # The model's facts (classes, normalisation, crop) travel in every checkpoint.
    model = build_model(cfg_model.arch, cfg_model.num_classes, info=classes_info(
        cfg_model.arch, classes, rgb=config.data.rgb, crop_size=config.data.input_size))
    for module in model.dsn.modules():
        if isinstance(module, nn.Dropout2d):
            module.p = cfg_model.aux_dropout
    if cfg_model.restore_from and not resumed:
        say(restore_weights(model, cfg_model.restore_from))
    elif not resumed and cfg_model.arch in IMAGENET_BACKBONES:
        say(f"warning: training {cfg_model.arch} from random weights. The published recipe (80.3 mIoU on "
            f"Cityscapes val) starts from the ImageNet deep-stem backbone {IMAGENET_BACKBONES[cfg_model.arch]}: "
            f"get it as docs/weights.md says and pass --restore-from FILE_OR_URL")
    if env.distributed:
        model = distributed.sync_batchnorm(model, env.device)
    model.to(env.device)
    if config.train.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def _resume(path: Path, config: TrainConfig, model: DGCNet, optimizer: torch.optim.Optimizer,
            scaler: torch.amp.GradScaler) -> tuple[int, float | None, dict[str, Any]]:
    """Load the checkpoint's weights and optimizer; its iteration, best mIoU and random generators."""
    state = ckpt.load_checkpoint(path)
    _check_resume(state, config, path)
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state["scaler"]:
            scaler.load_state_dict(state["scaler"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as error:
        raise DgcnetError(f"{path}: does not fit this run: {str(error).strip().splitlines()[0]}") from None
    return state["iteration"], state.get("best_miou"), state["rng"]


def _restore_rng(saved: dict[str, Any], env: DistEnv, path: Path, say: Callable[[str], None]) -> None:
    if saved["world_size"] == env.world_size:
        ckpt.set_rng_state(saved["ranks"][env.rank], path)
    else:
        say(f"note: the checkpoint was written by {saved['world_size']} processes, this run has "
            f"{env.world_size}: random streams (dropout) restart from the seed")


def setup_training(config: TrainConfig, env: DistEnv, runlog: RunLogger) -> TrainingRun:
    """Everything before the first step: seeds, data, model (starting weights, synchronised BN),
    optimizer, resume, the run folder, and last the random generators a resumed run saved."""
    cfg_data, cfg_train, cfg_run = config.data, config.train, config.run
    run_dir = Path(cfg_run.save_dir)
    resume_from = _resume_path(cfg_run.resume, run_dir)
    say = runlog.say
    _seed_everything(cfg_run.seed + env.rank)  # one seed per process: independent dropout masks

    if not env.distributed:  # synchronised BatchNorm sees every process's batch
        _check_batch_norm(config.model.arch, config.model.num_classes, cfg_train.batch_size, cfg_data.input_size)
    classes, dataset, sampler, val_dataset = _datasets(config, env, say)
    # Starting weights, then synchronised BN, then the optimizer over the final parameters.
    model = _build_model(config, env, classes, resume_from is not None, say)
    optimizer = build_optimizer(model, cfg_train.lr, cfg_train.momentum, cfg_train.weight_decay,
                                cfg_train.decay_norm_and_bias)
    scaler = torch.amp.GradScaler(env.device.type, enabled=cfg_train.amp == "fp16")
    if cfg_train.amp == "fp16" and env.device.type == "cpu":
        say("note: fp16 training on the CPU is very slow in PyTorch (convolution backward); bf16 is the CPU choice")
    start, best_miou, saved_rng = 0, None, None
    if resume_from is not None:
        start, best_miou, saved_rng = _resume(resume_from, config, model, optimizer, scaler)
        say(f"resumed from {resume_from} at iteration {start}")

    net: nn.Module = model
    if env.distributed:
        net = DistributedDataParallel(model, device_ids=[env.device] if env.device.type == "cuda" else None,
                                      forward_sync_buffers=False)  # synchronised BN keeps buffers equal
    if env.device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.remove_stale_temporaries(run_dir)
        if resume_from is not None:
            _keep_earlier_config(run_dir / "config.yaml", config, start)
        save_config(config, run_dir / "config.yaml")
    params = sum(p.numel() for p in model.parameters())
    workers = cfg_data.workers
    if workers is None:
        workers = default_workers(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    say(f"training {config.model.arch} ({params:,} parameters) on {len(dataset)} images, {env.world_size} "
        f"process(es) x batch {cfg_train.batch_size} on {env.device}, {workers} loader worker(s) each, "
        f"iterations {start}..{cfg_train.num_steps}, run folder {run_dir}")
    scale = f"random scale {cfg_data.scale_min:g}..{cfg_data.scale_max:g}" if cfg_data.scale else "no random scale"
    say(f"classes: {describe_classes(classes)}; crop {cfg_data.input_size[0]}x{cfg_data.input_size[1]}, {scale}")
    runlog.open(start)
    if saved_rng is not None:  # last, after everything that draws random numbers while setting up
        _restore_rng(saved_rng, env, resume_from, say)

    buffers = list(model.buffers())
    param_dtype = next(model.parameters()).dtype  # float32, unless built under another default dtype
    loaded = _batches(dataset, sampler, cfg_train.batch_size, workers, env.device.type == "cuda", start)
    return TrainingRun(
        config=config, env=env, run_dir=run_dir, model=model, net=net, optimizer=optimizer, scaler=scaler,
        # One graph for the network and the loss when compiled: the loss's full-size passes fuse.
        forward_loss=torch.compile(forward_loss) if cfg_train.compile else forward_loss,
        amp_dtype=precision.amp_dtype(cfg_train.amp), buffers=buffers,
        buffers_before_step=[b.clone() for b in buffers], loaded=loaded,
        batches=_on_device(loaded, env.device, param_dtype, cfg_train.channels_last, dataset.augment),
        val_dataset=val_dataset, workers=workers, start=start, best_miou=best_miou, resume_from=resume_from)


def forward_loss(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, loss: LossConfig,
                 amp_dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss, and (loss, main term, auxiliary term) detached for the log."""
    with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        outputs = net(images)
    main, aux = dgcnet_loss_terms(outputs, labels, ohem_thresh=loss.ohem_thresh, ohem_min_kept=loss.ohem_min_kept)
    total = main + loss.aux_weight * aux
    return total, torch.stack([total, main, aux]).detach()


@dataclass
class StepResult:
    loss_terms: torch.Tensor            # (loss, main term, auxiliary term), detached
    finite: bool                        # False: the step was skipped, its BN statistics updates undone
    grad_norm: torch.Tensor | None      # None when the loss was not finite


def train_step(run: TrainingRun, images: torch.Tensor, labels: torch.Tensor) -> StepResult:
    """One optimizer step, or none when the loss or the gradients are not finite."""
    torch._foreach_copy_(run.buffers_before_step, run.buffers)  # a few kernels, not one per buffer
    loss, loss_terms = run.forward_loss(run.net, images, labels, run.config.loss, run.amp_dtype)
    run.optimizer.zero_grad(set_to_none=True)
    # Every process takes the same decision, so DDP's collectives stay in step.
    finite = distributed.all_true(bool(torch.isfinite(loss.detach())), run.env)
    grad_norm = None
    if finite:
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), float("inf"))
        if run.scaler.is_enabled():  # fp16: the scaler skips overflowing steps and lowers its scale
            run.scaler.step(run.optimizer)
            run.scaler.update()
        else:  # gradients are already averaged, so every process sees the same norm
            finite = bool(torch.isfinite(grad_norm))
            if finite:
                run.optimizer.step()
    if not finite:
        # Forward already moved the BN running statistics towards the bad batch: undo that.
        torch._foreach_copy_(run.buffers, run.buffers_before_step)
        run.optimizer.zero_grad(set_to_none=True)
    return StepResult(loss_terms, finite, grad_norm)


@dataclass
class _Tally:
    """The loop's counts: skipped steps, non-finite steps in a row, and the loss of the log interval."""
    skipped: int = 0
    nonfinite_in_row: int = 0
    sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # loss, main term, auxiliary term
    steps: int = 0                      # finite steps in the interval
    final_loss: float | None = None     # the mean loss of the last interval

    def add(self, step: StepResult) -> None:
        if step.finite:
            self.nonfinite_in_row = 0
            self.sums = [a + b for a, b in zip(self.sums, step.loss_terms.tolist())]
            self.steps += 1
        else:
            self.skipped += 1
            self.nonfinite_in_row += 1

    def interval_means(self, env: DistEnv) -> list[float | None]:
        """Means over the interval and the processes (None without a finite step); starts the next interval."""
        means = [distributed.mean_over_processes(v / self.steps if self.steps else 0.0, env) for v in self.sums]
        if not self.steps:
            means = [None, None, None]
        self.final_loss = means[0]
        self.sums, self.steps = [0.0, 0.0, 0.0], 0
        return means


def _too_many_nonfinite(tally: _Tally, done: int, last: Path | None) -> DgcnetError:
    return DgcnetError(f"{tally.nonfinite_in_row} non-finite losses or gradients in a row (last at iteration "
                       f"{done}); stopped. Last checkpoint: {last or 'none'}. "
                       f"Try a lower train.lr, --amp off, or check the data and starting weights")


def _log_interval(run: TrainingRun, runlog: RunLogger, tally: _Tally, meter: StepMeter, step: StepResult,
                  done: int, epoch: int, lr: float) -> None:
    loss, main, aux = tally.interval_means(run.env)
    record = {"iteration": done, "epoch": epoch, "loss": loss, "lr": lr, "loss_main": main, "loss_aux": aux,
              **meter.interval(done), "peak_memory_gb": peak_memory_gb(run.env.device),
              "skipped_steps": tally.skipped}
    if step.finite:
        record["grad_norm"] = float(step.grad_norm)
    runlog.say(log_line(record, run.config.train.num_steps))
    runlog.record(record)


def _validate(model: DGCNet, config: TrainConfig, dataset: SegmentationDataset, device: torch.device,
              workers: int) -> tuple[EvalResult, DGCNet]:
    """Scores of a plain (unsynchronised, eval-mode) copy of the weights on the validation list,
    and that copy."""
    from dgcnet.engine.evaluate import evaluate

    plain = build_model(model.arch, model.num_classes, info=model.info)
    plain.load_state_dict(model.state_dict())
    result = evaluate(plain, dataset, mode=config.val.mode, tile=config.val.tile, device=device,
                      amp=config.train.amp, workers=workers, progress=False)
    if result.miou is None:
        raise DgcnetError(f"{config.val.data_list}: no labelled image to validate on")
    return result, plain


def _validation(run: TrainingRun, runlog: RunLogger, done: int) -> bool:
    """Validate on the main process, log the mIoU on all; whether it is the best so far."""
    config = run.config
    miou, val_iou = None, None
    if run.env.is_main:
        scores, plain = _validate(run.model, config, run.val_dataset, run.env.device, run.workers)
        miou, val_iou = scores.miou, dict(zip(scores.class_names, scores.iou.tolist()))
        if runlog.wants_images():
            runlog.images("val_prediction", validation_pictures(
                plain, run.val_dataset, mode=config.val.mode, tile=config.val.tile, amp=config.train.amp), done)
    miou = distributed.gather_objects(miou, run.env)[0]  # every process learns the result
    improved = run.best_miou is None or miou > run.best_miou
    run.best_miou = miou if improved else run.best_miou
    runlog.say(f"validation at iteration {done}: mIoU = {miou:.4f} (best {run.best_miou:.4f})")
    runlog.record({"iteration": done, "val_miou": miou, "best_miou": run.best_miou, "val_iou": val_iou})
    run.net.train()
    return improved


def _checkpoint_state(run: TrainingRun, iteration: int) -> dict[str, Any]:
    """What a checkpoint holds, but the random generators (the checkpointer gathers those)."""
    model, scaler = run.model, run.scaler
    return {"format": ckpt.FORMAT, "model": model.state_dict(), "arch": model.arch,
            "num_classes": model.num_classes, "info": model.info.to_dict(),
            "config": config_to_dict(run.config), "iteration": iteration, "optimizer": run.optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None, "best_miou": run.best_miou}


def _stop_on_signal(signum: int | None, run: TrainingRun, checkpoints: ckpt.Checkpointer, done: int,
                    healthy: bool) -> None:
    """SIGTERM or Ctrl-C: a checkpoint of the finished iteration ``done`` (unless steps are being
    skipped, or one was just written), then :class:`TrainingStopped`."""
    if healthy and not checkpoints.holds(done):
        checkpoints.save(_checkpoint_state(run, done))
    name = signal.Signals(signum).name if signum else "a signal on another process"
    raise TrainingStopped(f"stopped by {name} after iteration {done}; last checkpoint: {checkpoints.last or 'none'}; "
                          f"continue with --resume auto", signum or signal.SIGTERM)


def _train(config: TrainConfig, env: DistEnv, runlog: RunLogger) -> TrainResult:
    """The loop: one step per iteration, then the duties that fall on that iteration."""
    run = setup_training(config, env, runlog)
    cfg_train, cfg_run, total = config.train, config.run, config.train.num_steps
    checkpoints = ckpt.Checkpointer(run.run_dir, cfg_run.keep, env, last=run.resume_from)
    tally, meter = _Tally(), StepMeter(run.start, total)
    runlog.progress(total, run.start)
    run.net.train()
    try:
        with StopSignals() as stop:
            for iteration in range(run.start, total):
                done, waiting = iteration + 1, time.perf_counter()
                epoch, images, labels = next(run.batches)
                meter.add_wait(time.perf_counter() - waiting)
                lr = poly_lr(cfg_train.lr, iteration, total, cfg_train.poly_power)
                for group in run.optimizer.param_groups:
                    group["lr"] = lr
                step = train_step(run, images, labels)
                tally.add(step)
                if not step.finite and tally.nonfinite_in_row >= cfg_train.max_nonfinite_steps:
                    raise _too_many_nonfinite(tally, done, checkpoints.last)
                runlog.step()
                if done % cfg_run.log_every == 0 or done == total:
                    _log_interval(run, runlog, tally, meter, step, done, epoch, lr)
                improved = False
                if run.val_dataset is not None and (done % config.val.every == 0 or done == total):
                    validating = time.perf_counter()
                    improved = _validation(run, runlog, done)
                    meter.exclude_since(validating)  # validation is not a step
                # After validation, so that the checkpoint holds this iteration's best_miou. Not while
                # steps are being skipped: the weights that gave non-finite values would replace (and,
                # pruning, delete) the last good checkpoint that the stop message names.
                if (done % cfg_run.save_every == 0 and tally.nonfinite_in_row == 0) or done == total:
                    checkpoints.save(_checkpoint_state(run, done))
                if improved:
                    checkpoints.save_best(_checkpoint_state(run, done))
                if done < total and not distributed.all_true(not stop.requested, env):
                    _stop_on_signal(stop.signum, run, checkpoints, done, tally.nonfinite_in_row == 0)
    finally:
        run.batches.close()
        run.loaded.close()

    final = ckpt.checkpoint_path(run.run_dir, total)
    runlog.say(f"done: {total} iterations, {tally.skipped} skipped, final checkpoint {final}")
    return TrainResult(run.run_dir, final, total, tally.final_loss, tally.skipped, run.best_miou, runlog.metrics_path)
