"""Typed training configuration.

The dataclasses below are the schema and hold the published recipe as defaults. A YAML file
holds only what differs from them; ``section.key=value`` overrides come last. Unknown keys are
an error with a "did you mean" hint, and the resolved configuration is saved beside every run.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from dgcnet.errors import DgcnetError
from dgcnet.io import write_text

AMP_MODES = ("off", "bf16", "fp16")
DEVICE_HELP = "cpu, cuda, cuda:N or auto"


def is_device(name: str) -> bool:
    """True for the devices every command accepts: cpu, cuda, cuda:N (N a GPU index) and auto."""
    kind, colon, index = name.partition(":")
    if not colon:
        return kind in ("auto", "cpu", "cuda")
    return kind == "cuda" and index.isascii() and index.isdigit()


@dataclass
class ModelConfig:
    arch: str = "dgcnet_r101"
    num_classes: int | None = None  # None: the dataset's (19 for Cityscapes) or the class file's
    # Starting weights: an ImageNet deep-stem backbone (.pth with fc.*), a full DGCNet state dict,
    # a training checkpoint, or any file `dgcnet convert` reads.
    restore_from: str | None = None
    # Dropout2d probability in the auxiliary head (the model's own value is 0.1).
    aux_dropout: float = 0.1


RESIZE_ON = ("auto", "loader", "device")


def resize_on_device(resize_on: str, device_type: str) -> bool:
    """data.resize_on resolved for a device type: "auto" resizes on a GPU, where it costs next to
    nothing, and in the loader workers otherwise, where it would take the training process's CPU."""
    return resize_on == "device" or (resize_on == "auto" and device_type != "cpu")


@dataclass
class DataConfig:
    # A dataset the package knows (its classes, list layout and training defaults): cityscapes,
    # camvid, ... (`dgcnet lists --help` names them all). data.classes replaces its classes.
    dataset: str = "cityscapes"
    data_dir: str = "./dataset"
    data_list: str | None = None
    input_size: tuple[int, int] | None = None  # crop height, width; None: the dataset's (832x832 for Cityscapes)
    scale: bool = True   # random scale, factors scale_min + k/10 up to scale_max
    scale_min: float | None = None  # None: the dataset's (0.7 for Cityscapes, 0.5 for CamVid)
    scale_max: float | None = None  # None: the dataset's (2.1 for Cityscapes, 2.0 for CamVid)
    mirror: bool = True  # random horizontal flip
    rgb: bool = True     # ImageNet RGB normalisation (False: Caffe-style BGR mean subtraction)
    # Loader processes per training process; None: the CPUs this process may use, shared by the
    # training processes on this machine, one CPU left to each training process, at most 16.
    workers: int | None = None
    classes: str | None = None  # class file (YAML/JSON) of your own data; None: the dataset's classes
    # Decoded arrays from `dgcnet prepare` instead of decoding PNGs (same samples, 4-5x less CPU):
    # "auto": data_dir/dgcnet-prepared when it exists; a folder: that store; None: decode the files.
    prepared: str | None = "auto"
    # Where training crops are resized and normalised: "loader" (the loader workers send float
    # crops), "device" (they send the uint8 source window each crop reads, a fraction of the
    # bytes and of the CPU time, and the training device finishes the crop: the same crop),
    # "auto": the device when it is a GPU, else the loader.
    resize_on: str = "auto"


@dataclass
class LossConfig:
    ohem_thresh: float = 0.7
    ohem_min_kept: int = 100000
    aux_weight: float = 0.4


@dataclass
class SolverConfig:
    """How the weights are updated (the ``train`` section)."""
    batch_size: int = 1  # per process
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    num_steps: int = 60000
    # False exempts BatchNorm parameters and biases from weight decay (the recipe decays them).
    decay_norm_and_bias: bool = True
    amp: str = "off"
    channels_last: bool = False
    compile: bool = False
    # Consecutive non-finite steps (loss or gradients) that stop the run.
    max_nonfinite_steps: int = 10


@dataclass
class RunConfig:
    save_dir: str = "runs/train"
    save_every: int = 2000
    keep: int = 3
    resume: str | None = None  # a checkpoint path, or "auto": the latest in save_dir, if any
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    # None: distributed when launched by torchrun with WORLD_SIZE > 1.
    distributed: bool | None = None
    # TensorBoard events in save_dir/tensorboard. None: when tensorboard is installed (a note says
    # how to get it when not); True: required; False: none.
    tensorboard: bool | None = None
    # Resume even when settings that change the run (data, crop, learning rate, ...) differ from
    # the checkpoint's; the run's earlier config.yaml is kept as config_until_<iteration>.yaml.
    allow_changes: bool = False


@dataclass
class ValConfig:
    every: int = 0  # iterations between validations; 0 = never
    data_list: str | None = None
    data_dir: str | None = None  # default: data.data_dir
    mode: str = "sliding"
    # Sliding-window tile; None: the model's own, the training crop (data.input_size), as
    # `dgcnet eval` uses it: 832 (stride 555) for the recipe.
    tile: int | None = None


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: SolverConfig = field(default_factory=SolverConfig)
    run: RunConfig = field(default_factory=RunConfig)
    val: ValConfig = field(default_factory=ValConfig)


def config_keys(config: TrainConfig | None = None) -> list[str]:
    """All dotted keys, e.g. ``train.lr``."""
    config = config or TrainConfig()
    return [f"{s.name}.{f.name}" for s in dataclasses.fields(config)
            for f in dataclasses.fields(getattr(config, s.name))]


def _hint(key: str, keys: list[str]) -> str:
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if not close:  # the right name in another section, e.g. "lr" or "data.lr" for "train.lr"
        leaf = key.rpartition(".")[2]
        close = [k for k in keys if k.rpartition(".")[2] == leaf][:1]
    return f" (did you mean '{close[0]}'?)" if close else ""


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
        return value.lower() in ("true", "yes", "1", "on")
    raise ValueError("expected true or false")


def parse_size(value: Any) -> tuple[int, int]:
    """832, "832", "832,832", "832x832", [832, 832] -> (832, 832)."""
    if isinstance(value, str):
        value = [p for p in value.lower().replace("x", ",").split(",") if p.strip()]
    if isinstance(value, (int, str)):
        value = [value]
    if isinstance(value, (list, tuple)) and len(value) in (1, 2):
        sizes = tuple(_parse_value(v, int) for v in value)
        if len(sizes) == 1:
            sizes = sizes * 2
        if min(sizes) > 0:
            return sizes  # type: ignore[return-value]
    raise ValueError("expected a size like 832 or 832,832")


def _parse_value(value: Any, hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _parse_value(value, options[0])
    if hint is bool:
        return _parse_bool(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError("expected an integer")
        try:
            return int(value)
        except ValueError:
            raise ValueError("expected an integer") from None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError("expected a number")
        try:
            return float(value)
        except ValueError:
            raise ValueError("expected a number") from None
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError("expected a string")
        return str(value)
    if typing.get_origin(hint) is tuple:
        return parse_size(value)
    raise TypeError(f"unsupported config type {hint}")


def set_value(config: TrainConfig, key: str, value: Any, source: str = "") -> None:
    """Set ``section.name`` from a YAML/command-line value, converting it to the field's type."""
    where = f"{source}: " if source else ""
    keys = config_keys(config)
    if key not in keys:
        raise DgcnetError(f"{where}unknown config key '{key}'{_hint(key, keys)}")
    section_name, name = key.split(".")
    section = getattr(config, section_name)
    hint = typing.get_type_hints(type(section))[name]
    try:
        parsed = _parse_value(value, hint)
    except ValueError as error:
        raise DgcnetError(f"{where}{key}: {error}, got {value!r}") from None
    setattr(section, name, parsed)


def _flatten(data: Mapping, source: str, prefix: str = "") -> Iterable[tuple[str, Any]]:
    for name, value in data.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            if prefix:  # only one level of sections
                raise DgcnetError(f"{source}: unknown config key '{key}'{_hint(key, config_keys())}")
            yield from _flatten(value, source, f"{key}.")
        elif not prefix:
            raise DgcnetError(f"{source}: '{key}' must be a section holding keys{_hint(key, config_keys())}")
        else:
            yield key, value


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error (YAML itself keeps
    the last silently, so a repeated section would drop the settings of the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, typing.Hashable):
                continue  # the base class reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"'{key}' given twice (first at line {seen[key]})", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path) -> list[tuple[str, Any]]:
    """The (dotted key, value) pairs a YAML config file sets."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except OSError as error:
        raise DgcnetError(f"{path}: cannot read config ({error.strerror})") from None
    except yaml.constructor.ConstructorError as error:
        raise DgcnetError(f"{path}:{error.problem_mark.line + 1}: {error.problem}") from None
    except yaml.YAMLError as error:
        raise DgcnetError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
    if data is None:
        return []
    if not isinstance(data, Mapping):
        raise DgcnetError(f"{path}: expected a mapping of sections (model, data, loss, train, run, val)")
    return list(_flatten(data, str(path)))


def parse_override(text: str) -> tuple[str, Any]:
    """``train.lr=0.005`` -> ("train.lr", 0.005); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise DgcnetError(f"override {text!r}: expected KEY=VALUE, e.g. train.lr=0.005")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def input_bytes(batch: int, size: tuple[int, int]) -> int:
    """Bytes of one float32 batch of 3-channel images: a floor on the memory a size needs."""
    return batch * 3 * size[0] * size[1] * 4


def check_size(size: tuple[int, int], batch: int, what: str) -> None:
    """Refuse sizes whose input batch alone would not fit in this machine's memory."""
    needed = input_bytes(batch, size)
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not on every platform
        available = 2**50
    if needed > available:
        raise DgcnetError(f"{what} {size[0]}x{size[1]}: the input alone would need {needed / 2**30:,.1f} GiB "
                          f"({batch} x 3 x {size[0]} x {size[1]} float32), the network many times more; "
                          f"this machine has {available / 2**30:,.1f} GiB")


def validate(config: TrainConfig) -> None:
    """Fill what is left to the dataset (:func:`apply_dataset_defaults`), then check choices and
    ranges that the types alone do not, so that a run does not crash (or mean something else)
    after the heavy work has started."""
    from dgcnet.engine.inference import MODES
    from dgcnet.models import list_models  # models import the data package; keep config light

    apply_dataset_defaults(config)
    t, loss, data = config.train, config.loss, config.data
    checks = [
        (config.model.arch in list_models(), f"model.arch: unknown arch {config.model.arch!r}; choose one of "
                                             f"{', '.join(list_models())}"),
        (config.train.amp in AMP_MODES, f"train.amp: expected one of {', '.join(AMP_MODES)}, got {config.train.amp!r}"),
        (is_device(config.run.device), f"run.device: expected {DEVICE_HELP}, got {config.run.device!r}"),
        (config.model.num_classes >= 1, "model.num_classes must be at least 1"),
        (_finite(config.model.aux_dropout) and 0.0 <= config.model.aux_dropout < 1.0, "model.aux_dropout must be in [0, 1)"),
        (config.train.batch_size >= 1, "train.batch_size must be at least 1"),
        (config.train.num_steps >= 1, "train.num_steps must be at least 1"),
        (_finite(t.lr) and t.lr > 0, f"train.lr must be a positive number, got {t.lr}"),
        (_finite(t.momentum) and 0 <= t.momentum < 1, f"train.momentum must be in [0, 1), got {t.momentum}"),
        (_finite(t.weight_decay) and t.weight_decay >= 0, f"train.weight_decay must not be negative, got {t.weight_decay}"),
        (_finite(t.poly_power) and t.poly_power >= 0, f"train.poly_power must not be negative, got {t.poly_power}"),
        (_finite(loss.ohem_thresh) and 0 < loss.ohem_thresh <= 1,
         f"loss.ohem_thresh is a probability in (0, 1], got {loss.ohem_thresh}"),
        (_finite(loss.aux_weight) and loss.aux_weight >= 0, f"loss.aux_weight must not be negative, got {loss.aux_weight}"),
        (0 <= config.run.seed < 2**32, f"run.seed must be in 0..2^32-1, got {config.run.seed}"),
        (config.val.mode in MODES, f"val.mode: expected one of {', '.join(MODES)}, got {config.val.mode!r}"),
        (config.val.tile is None or config.val.tile >= 1, f"val.tile must be at least 1, got {config.val.tile}"),
        (config.train.max_nonfinite_steps >= 1, "train.max_nonfinite_steps must be at least 1"),
        (config.loss.ohem_min_kept >= 0, "loss.ohem_min_kept must not be negative"),
        (config.data.workers is None or config.data.workers >= 0, "data.workers must not be negative"),
        (_finite(data.scale_min, data.scale_max) and 0 < data.scale_min <= data.scale_max <= 10,
         f"data.scale_min and data.scale_max must satisfy 0 < scale_min <= scale_max <= 10, "
         f"got {data.scale_min} and {data.scale_max}"),
        (config.data.resize_on in RESIZE_ON, f"data.resize_on: expected one of {', '.join(RESIZE_ON)}, "
                                             f"got {config.data.resize_on!r}"),
        (config.run.save_every >= 1, "run.save_every must be at least 1"),
        (config.run.keep >= 1, "run.keep must be at least 1"),
        (config.run.log_every >= 1, "run.log_every must be at least 1"),
        (config.val.every >= 0, "val.every must not be negative"),
        (config.val.every == 0 or config.val.data_list is not None, "val.every is set but val.data_list is not"),
    ]
    for ok, message in checks:
        if not ok:
            raise DgcnetError(message)
    check_size(config.data.input_size, t.batch_size, "data.input_size")


def apply_dataset_defaults(config: TrainConfig) -> TrainConfig:
    """Fill the settings left to the dataset (None) from ``data.dataset``: the number of classes
    (or the class file's), the training crop and the random-scale range. Returns ``config``."""
    from dgcnet.data.classes import load_class_file
    from dgcnet.data.datasets import get_dataset

    spec = get_dataset(config.data.dataset)
    data, model = config.data, config.model
    if model.num_classes is None:
        model.num_classes = (load_class_file(data.classes) if data.classes else spec.classes).num_classes
    if data.input_size is None:
        data.input_size = spec.crop_size
    if data.scale_min is None:
        data.scale_min = spec.scale_range[0]
    if data.scale_max is None:
        data.scale_max = spec.scale_range[1]
    return config


def load_config(path: str | Path | None = None, overrides: Iterable[tuple[str, Any] | str] = (),
                ) -> TrainConfig:
    """Defaults, then the YAML file (if any), then the overrides in order (``"k=v"`` or ``(k, v)``);
    what is left to the dataset is then filled from it."""
    config = TrainConfig()
    if path is not None:
        for key, value in read_yaml(path):
            set_value(config, key, value, str(path))
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        set_value(config, key, value)
    validate(config)
    return config


def config_to_dict(config: TrainConfig) -> dict[str, dict[str, Any]]:
    """Plain values only (tuples become lists), for YAML and checkpoints."""
    return {section: {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
            for section, values in dataclasses.asdict(config).items()}


def config_from_dict(data: Mapping[str, Mapping[str, Any]], source: str = "") -> TrainConfig:
    config = TrainConfig()
    for key, value in _flatten(data, source or "config"):
        set_value(config, key, value, source)
    validate(config)
    return config


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved configuration as YAML (temporary file, then rename)."""
    write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
