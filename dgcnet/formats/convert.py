"""Read weights in any supported format into PyTorch names, check them, and write any format.

Formats, recognised from the file content (never the extension):
- ``pth``: a ``torch.save`` state dict (the authors' trained model, or their ImageNet deep-stem
  backbone with ``fc.*``), loaded with ``weights_only=True``.
- ``dgcnet-train``: our training checkpoint (``{"format": "dgcnet-train-v1", "model": ...}``).
- ``dgcnet`` / ``safetensors``: safetensors with PyTorch names; ``dgcnet`` also carries the
  model's facts (:class:`dgcnet.models.ModelInfo`: arch, classes, normalisation, training crop,
  evaluation tile) as metadata, which makes it self-describing.
- ``mindspore``: a MindSpore ``.ckpt`` with the port's names (bare or with train.py's ``net.``).
"""
from __future__ import annotations

import json
import pickle
import re
import struct
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from torch import nn

from dgcnet.data.datasets import describe_classes
from dgcnet.errors import DgcnetError
from dgcnet.io import atomic_write
from dgcnet.formats import mindspore
from dgcnet.models import DGCNet, ModelInfo, build_model, default_info, list_models
from dgcnet.models.factory import ARCHS

TARGETS = ("dgcnet", "safetensors", "mindspore", "pth")
TRAIN_FORMAT = "dgcnet-train-v1"
RELEASE_FORMAT = "dgcnet"

# PyTorch BatchNorm name <-> MindSpore name, in the order MindSpore lists a BN's parameters.
_BN_TO_MS = {"running_mean": "moving_mean", "running_var": "moving_variance",
             "weight": "gamma", "bias": "beta"}
_BN_FROM_MS = {ms: pt for pt, ms in _BN_TO_MS.items()}
# MindSpore training-wrapper entries that are not network parameters.
_MS_OPTIMIZER_PREFIXES = ("accum.", "stat.", "moments.", "moment1.", "moment2.", "adam_m.", "adam_v.")
# (block type, blocks in layer3) -> architecture: what tells the architectures apart in a state dict.
_BLOCKS_TO_ARCH = {(spec.block.__name__, spec.layers[2]): arch for arch, spec in ARCHS.items()}


@dataclass
class Weights:
    """Tensors under our (= the authors') state-dict names plus what the file says about them."""
    tensors: dict[str, torch.Tensor]
    source_format: str
    arch: str | None = None
    num_classes: int | None = None
    info: ModelInfo | None = None  # None: the file records no facts (the authors', MindSpore, plain files)
    skipped: Counter = field(default_factory=Counter)  # kind -> number of entries left out


@dataclass
class Report:
    """What a conversion did, for printing."""
    source_format: str
    arch: str
    num_classes: int
    converted: int
    skipped: Counter
    missing: list[str]
    unexpected: list[str]
    added: Counter
    classes: str = ""  # the classes the file records, when it records them

    def lines(self) -> list[str]:
        out = [f"source format  {self.source_format}",
               f"arch           {self.arch} ({self.num_classes} classes)"]
        if self.classes:
            out.append(f"classes        {self.classes}")
        out.append(f"converted      {self.converted} tensors")
        out.append("skipped        " + (", ".join(f"{n} {kind}" for kind, n in sorted(self.skipped.items()))
                                        or "nothing"))
        if self.added:
            out.append("added          " + ", ".join(f"{n} {kind}" for kind, n in sorted(self.added.items())))
        out.append(f"missing        {summarize_names(self.missing)}")
        out.append(f"unexpected     {summarize_names(self.unexpected)}")
        return out


def summarize_names(names: list[str], limit: int = 4) -> str:
    if not names:
        return "none"
    roots = Counter(name.split(".")[0] for name in names)
    groups = ", ".join(f"{root}.* ({n})" for root, n in roots.items())
    return f"{len(names)}: {groups}" if len(names) > limit else f"{len(names)}: {', '.join(names)}"


# ---------------------------------------------------------------- reading

def detect_format(path: Path) -> str:
    """Name the container format from the first bytes: torch, safetensors or mindspore."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as error:
        raise DgcnetError(f"{path}: cannot read: {error.strerror}") from None
    if not head:
        raise DgcnetError(f"{path}: the file is empty")
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch zip, legacy torch pickle
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if mindspore.looks_like_checkpoint(head):
        return "mindspore"
    raise DgcnetError(f"{path}: unrecognised weight format (not a PyTorch .pth, safetensors or "
                      f"MindSpore .ckpt file)")


def torch_load(path: Path) -> object:
    """``torch.load`` that only accepts tensors and plain values: a pickle that would run code is refused."""
    try:
        with warnings.catch_warnings():  # a garbage file can look like an odd pickle protocol
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        if found is None:  # random bytes after a pickle-like first byte: an unknown opcode, not code
            raise DgcnetError(f"{path}: not a checkpoint (not a readable PyTorch file: the pickle "
                              f"stream is malformed)") from None
        raise DgcnetError(f"{path}: refused: the pickle holds more than tensors and plain values "
                          f"and could run code (it calls {found.group(1)}); only weights_only-loadable "
                          f"files are read") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError, KeyError, TypeError,
            AttributeError, IndexError, OverflowError, MemoryError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DgcnetError(f"{path}: not a checkpoint (not a readable PyTorch file: {message})") from None


def _read_torch(path: Path) -> Weights:
    obj = torch_load(path)
    if isinstance(obj, dict) and obj.get("format") == TRAIN_FORMAT:
        return _from_train_checkpoint(path, obj)
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) and v.layout == torch.strided for k, v in obj.items()):
        raise DgcnetError(f"{path}: a PyTorch file but not a state dict (str -> dense tensor) "
                          f"or a {TRAIN_FORMAT} checkpoint")
    tensors = dict(obj)
    if all(k.startswith("module.") for k in tensors):  # saved from a DataParallel wrapper
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    weights = Weights(tensors, "pth")
    fc = [k for k in tensors if k.startswith("fc.")]
    if fc and "head.bottleneck.3.weight" not in tensors:  # ImageNet backbone: drop its classifier
        for k in fc:
            del tensors[k]
        weights.skipped["ImageNet classifier (fc.*)"] = len(fc)
        weights.source_format = "pth (ImageNet backbone)"
    return weights


def _count_tensors(obj: object) -> int:
    if isinstance(obj, torch.Tensor):
        return 1
    if isinstance(obj, dict):
        return sum(_count_tensors(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_count_tensors(v) for v in obj)
    return 0


def _from_train_checkpoint(path: Path, ckpt: dict) -> Weights:
    from dgcnet.engine.checkpoint import check_train_state

    check_train_state(ckpt, path, resume=False)
    weights = Weights(dict(ckpt["model"]), "dgcnet-train", arch=ckpt.get("arch"), num_classes=ckpt.get("num_classes"))
    values = ckpt.get("info")
    if not isinstance(values, dict) and ckpt.get("class_names") is not None:
        # Written before checkpoints carried "info": the facts it does record, crop from its config.
        config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
        values = {"arch": ckpt.get("arch"), "num_classes": ckpt.get("num_classes"), "class_names": ckpt["class_names"],
                  "rgb": ckpt.get("rgb"), "crop_size": (config.get("data") or {}).get("input_size")}
    if isinstance(values, dict):
        weights.info, _ = ModelInfo.from_values(values, str(path))
    optimizer = _count_tensors(ckpt.get("optimizer")) + _count_tensors(ckpt.get("scaler"))
    if optimizer:
        weights.skipped["optimizer state"] = optimizer
    extras = [k for k in ckpt if k not in ("format", "model", "arch", "num_classes", "info", "class_names", "rgb",
                                         "optimizer", "scaler")]
    if extras:
        weights.skipped["training state (" + ", ".join(extras) + ")"] = len(extras)
    return weights


def _read_safetensors(path: Path) -> Weights:
    data = path.read_bytes()
    # Check the header length against the file before the library sees it.
    header_length = int.from_bytes(data[:8], "little")
    if len(data) < 8 or header_length > len(data) - 8:
        raise DgcnetError(f"{path}: not a valid safetensors file: header length {header_length} "
                          f"exceeds the file ({len(data)} bytes)")
    try:
        header = json.loads(data[8:8 + header_length])
        tensors = load_safetensors_bytes(data)
    except (SafetensorError, ValueError, UnicodeDecodeError, TypeError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DgcnetError(f"{path}: not a valid safetensors file: {message}") from None
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != RELEASE_FORMAT:
        return Weights(tensors, "safetensors")
    info, missing = ModelInfo.from_metadata(metadata, str(path))
    if "rgb" in missing:
        raise DgcnetError(f"{path}: dgcnet safetensors file with bad metadata (no 'rgb')")
    if missing:  # written by an older version: the rest are the published recipe's
        warnings.warn(f"{path}: records no {', '.join(missing)}: using the published recipe's", stacklevel=3)
    return Weights(tensors, "dgcnet", arch=info.arch, num_classes=info.num_classes, info=info)


def from_mindspore_names(entries: Mapping[str, torch.Tensor | str], source: str = "mindspore") -> Weights:
    """Network parameters of a MindSpore checkpoint under PyTorch names (``net.`` stripped, BN
    names mapped); optimizer state and scalars counted as skipped."""
    weights = Weights({}, source)
    for tag, value in entries.items():
        if tag.startswith(_MS_OPTIMIZER_PREFIXES):
            weights.skipped["optimizer state"] += 1
        elif isinstance(value, str) or "." not in tag:  # global_step, scale_sense, momentum, ...
            weights.skipped["scalars"] += 1
        else:
            name = tag[len("net."):] if tag.startswith("net.") else tag
            module, _, leaf = name.rpartition(".")
            weights.tensors[f"{module}.{_BN_FROM_MS.get(leaf, leaf)}"] = value
    return weights


def _read_mindspore(path: Path) -> Weights:
    weights = from_mindspore_names(mindspore.read_checkpoint(path))
    if not weights.tensors:
        raise DgcnetError(f"{path}: MindSpore checkpoint without network parameters")
    return weights


def read_weights(path: str | Path) -> Weights:
    """Read any supported file into PyTorch names (MindSpore Conv1d weights keep their 4-D shape
    until :func:`fit_to_model`). ``path`` may also be a URL, ``hf://OWNER/NAME`` or a Hub-layout
    folder (:func:`dgcnet.formats.download.resolve_weights`)."""
    from dgcnet.formats.download import resolve_weights

    path = resolve_weights(path)
    if not path.is_file():
        raise DgcnetError(f"{path}: no such file")
    kind = detect_format(path)
    if kind == "torch":
        weights = _read_torch(path)
    elif kind == "safetensors":
        weights = _read_safetensors(path)
    else:
        weights = _read_mindspore(path)
    check_finite_weights(weights.tensors, path)
    return weights


def check_finite_weights(tensors: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Refuse weights holding NaN or infinity: they load without error and predict nonsense."""
    for name, value in tensors.items():
        if value.is_floating_point() or value.is_complex():
            if not bool(torch.isfinite(value).all()):
                bad = int((~torch.isfinite(value)).sum())
                raise DgcnetError(f"{path}: refused: tensor {name} holds {bad} non-finite value(s) (NaN or "
                                  f"infinity); the weights are broken")


# ---------------------------------------------------------------- checking against the model

def infer_arch(tensors: dict[str, torch.Tensor]) -> str | None:
    """The architecture from layer3's block type and count (None when it does not match one)."""
    blocks = {int(m.group(1)) for k in tensors if (m := re.match(r"layer3\.(\d+)\.", k))}
    if not blocks:
        return None
    block = "Bottleneck" if "layer1.0.conv3.weight" in tensors else "BasicBlock"
    return _BLOCKS_TO_ARCH.get((block, max(blocks) + 1))


def _meta_model(arch: str, num_classes: int) -> DGCNet:
    with torch.device("meta"):
        return build_model(arch, num_classes)


def _conv1d_weights(model: nn.Module) -> set[str]:
    return {f"{name}.weight" for name, module in model.named_modules() if isinstance(module, nn.Conv1d)}


def match_to_model(tensors: Mapping[str, torch.Tensor], model: nn.Module
                   ) -> tuple[dict[str, torch.Tensor], list[tuple[str, tuple, tuple]]]:
    """The tensors whose names ``model`` has and whose shapes fit it, in its state dict's order
    (a Conv1d weight MindSpore stores 4-D is reshaped), and (name, file shape, model shape) for
    each name whose shape differs."""
    conv1d = _conv1d_weights(model)
    matched: dict[str, torch.Tensor] = {}
    mismatches = []
    for name, target in model.state_dict().items():
        value = tensors.get(name)
        if value is None:
            continue
        if name in conv1d and value.dim() == 4 and value.shape[3] == 1:
            value = value.reshape(value.shape[:3])
        if value.shape != target.shape:
            mismatches.append((name, tuple(value.shape), tuple(target.shape)))
            continue
        matched[name] = value
    return matched, mismatches


def fit_to_model(weights: Weights, path: str | Path, arch: str | None = None,
                 num_classes: int | None = None, strict: bool = False) -> tuple[dict[str, torch.Tensor], Report]:
    """Match the tensors to the model of ``arch``: order them as the model's state dict, restore
    Conv1d shapes, add ``num_batches_tracked`` (0) where a format has none, and fail on shape
    mismatches (and, with ``strict``, on missing or unexpected names)."""
    tensors = weights.tensors
    arch = arch or weights.arch or infer_arch(tensors)
    if arch is None:
        raise DgcnetError(f"{path}: cannot tell the architecture from the tensor names; pass --arch")
    if arch not in list_models():
        raise DgcnetError(f"{path}: unknown arch {arch!r}; choose one of {', '.join(list_models())}")
    classifier = tensors.get("head.bottleneck.3.weight")
    file_classes = int(classifier.shape[0]) if classifier is not None and classifier.dim() else weights.num_classes
    if num_classes is not None and file_classes is not None and num_classes != file_classes:
        raise DgcnetError(f"{path}: the file has {file_classes} classes, not {num_classes}")
    num_classes = num_classes or file_classes or 19
    model = _meta_model(arch, num_classes)
    expected = model.state_dict()
    fitted, mismatches = match_to_model(tensors, model)
    if mismatches:
        name, file_shape, model_shape = mismatches[0]
        raise DgcnetError(f"{path}: {len(mismatches)} shape mismatch(es) for {arch} with {num_classes} classes, "
                          f"e.g. {name}: file {file_shape} vs {arch} {model_shape}")
    added: Counter = Counter()
    for name in expected:  # formats without the counter (MindSpore) get 0, as a fresh BatchNorm has
        if name.endswith("num_batches_tracked") and name not in fitted and \
                name.replace("num_batches_tracked", "running_mean") in tensors:
            fitted[name] = torch.tensor(0, dtype=torch.long)
            added["num_batches_tracked (0)"] += 1
    fitted = {name: fitted[name] for name in expected if name in fitted}  # the state dict's order
    missing = [k for k in expected if k not in fitted]
    unexpected = [k for k in tensors if k not in expected]
    if strict and (missing or unexpected):
        raise DgcnetError(f"{path}: --strict: missing {summarize_names(missing)}; unexpected {summarize_names(unexpected)}")
    report = Report(weights.source_format, arch, num_classes, converted=len(fitted) - sum(added.values()),
                    skipped=weights.skipped, missing=missing, unexpected=unexpected, added=added,
                    classes=describe_classes(weights.info.classes) if weights.info is not None else "")
    weights.arch, weights.num_classes = arch, num_classes
    return fitted, report


# ---------------------------------------------------------------- writing

def to_mindspore_names(state_dict: dict[str, torch.Tensor], conv1d: set[str],
                       prefix: str = "") -> tuple[dict[str, torch.Tensor], int]:
    """Map a state dict to the port's names in its parameter order (per BN: moving_mean,
    moving_variance, gamma, beta); drops num_batches_tracked and returns how many."""
    modules: dict[str, list[str]] = {}
    dropped = 0
    for name in state_dict:
        if name.endswith(".num_batches_tracked"):
            dropped += 1
            continue
        module, _, leaf = name.rpartition(".")
        modules.setdefault(module, []).append(leaf)
    out: dict[str, torch.Tensor] = {}
    order = list(_BN_TO_MS)
    for module, leaves in modules.items():
        is_bn = "running_mean" in leaves
        if is_bn:
            leaves = sorted(leaves, key=order.index)
        for leaf in leaves:
            value = state_dict[f"{module}.{leaf}"]
            if f"{module}.{leaf}" in conv1d:
                value = value.reshape(*value.shape, 1)
            out[f"{prefix}{module}.{_BN_TO_MS[leaf] if is_bn else leaf}"] = value
    return out, dropped


def release_metadata(info: ModelInfo) -> dict[str, str]:
    """The metadata of a released ``dgcnet`` safetensors file (all values are strings): the
    model's facts (:meth:`ModelInfo.to_metadata`). ``mean``/``std`` describe the input
    normalisation on the 0..255 scale: the model takes ``(pixel - mean) / std`` per channel,
    in the order ``channels`` says (RGB or BGR).
    """
    return {"format": RELEASE_FORMAT, **info.to_metadata()}


# torch dtype -> safetensors dtype name
_SAFETENSORS_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                       torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
                       torch.uint8: "U8", torch.bool: "BOOL"}


def write_safetensors(tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, str]) -> None:
    """Write a safetensors file whose bytes depend only on its content: tensors and metadata in
    name order (the safetensors library orders its metadata differently from run to run), created
    with the permissions the umask gives, like any other file."""
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    offset = 0
    for name in sorted(tensors):
        value = tensors[name]
        if value.dtype not in _SAFETENSORS_DTYPES:
            raise DgcnetError(f"{name}: dtype {value.dtype} cannot be stored in safetensors")
        size = value.numel() * value.element_size()
        header[name] = {"dtype": _SAFETENSORS_DTYPES[value.dtype], "shape": list(value.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with atomic_write(path) as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name in sorted(tensors):  # little-endian bytes, C order (x86 and ARM are little-endian)
            f.write(tensors[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def model_info(weights: Weights, path: str | Path) -> ModelInfo:
    """The facts a file records, or, for files that record none (the authors' .pth, MindSpore,
    plain safetensors), the published Cityscapes ones, said once (a warning)."""
    if weights.info is not None:
        if (weights.info.arch, weights.info.num_classes) != (weights.arch, weights.num_classes):
            raise DgcnetError(f"{path}: the file describes {weights.info.arch} with {weights.info.num_classes} "
                              f"classes but holds {weights.arch} with {weights.num_classes}")
        return weights.info
    info = default_info(weights.arch, weights.num_classes)
    what = ("the published Cityscapes ones (RGB normalisation, crop 832, tile 832 at stride 555)"
            if weights.num_classes == 19 else "RGB normalisation, crop 832, classes named class_<i>")
    warnings.warn(f"{path}: records no classes, normalisation or training crop: using {what}", stacklevel=3)
    return info


def write_weights(state_dict: dict[str, torch.Tensor], dst: str | Path, to: str, *, info: ModelInfo,
                  prefix: str = "", crc: bool = False) -> tuple[int, Counter]:
    """Write ``state_dict`` (PyTorch names) as ``to``; returns how many tensors were written and
    the entries the format has no place for."""
    dst = Path(dst)
    if to not in TARGETS:
        raise DgcnetError(f"unknown target format {to!r}; choose one of {', '.join(TARGETS)}")
    dropped: Counter = Counter()
    written = len(state_dict)
    if to == "mindspore":
        tensors, n = to_mindspore_names(state_dict, _conv1d_weights(_meta_model(info.arch, info.num_classes)), prefix)
        if n:
            dropped["num_batches_tracked"] = n
        mindspore.write_checkpoint(dst, tensors, crc=crc)
        return len(tensors), dropped
    if to == "pth":
        with atomic_write(dst) as f:  # a failure leaves no partial file
            torch.save(state_dict, f)
    else:
        metadata = release_metadata(info) if to == "dgcnet" else {"format": "pt"}
        write_safetensors(state_dict, dst, metadata)
    return written, dropped


def convert(src: str | Path, dst: str | Path, to: str = "dgcnet", *, arch: str | None = None,
            strict: bool = False, prefix: str = "", crc: bool = False) -> Report:
    """Convert ``src`` (any format) to ``dst`` in format ``to``; nothing is written on error."""
    if to not in TARGETS:
        raise DgcnetError(f"unknown target format {to!r}; choose one of {', '.join(TARGETS)}")
    if prefix and to != "mindspore":
        raise DgcnetError("--prefix only applies to --to mindspore")
    if Path(src).resolve() == Path(dst).resolve():
        raise DgcnetError(f"{dst}: the destination is the source file")
    weights = read_weights(src)
    state_dict, report = fit_to_model(weights, src, arch=arch, strict=strict)
    if to == "dgcnet" and report.missing:
        raise DgcnetError(f"{src}: --to dgcnet needs a complete model, missing {summarize_names(report.missing)}; "
                          f"use --to safetensors, pth or mindspore for partial weights")
    # Only a dgcnet file records the facts; other formats need just the architecture.
    info = model_info(weights, src) if to == "dgcnet" else weights.info or default_info(report.arch, report.num_classes)
    if to == "mindspore":  # counters added by fit_to_model are not dropped from the source
        dropped_counters = report.added.pop("num_batches_tracked (0)", 0)
    written, dropped = write_weights(state_dict, dst, to, info=info, prefix=prefix, crc=crc)
    if to == "mindspore":
        dropped["num_batches_tracked"] -= dropped_counters
    report.skipped.update(+dropped)
    report.converted = written - sum(report.added.values())
    return report
