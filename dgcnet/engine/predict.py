"""Prediction: the ``dgcnet.predict`` API, prediction PNGs (labelIds for the Cityscapes test
server, colour, overlay, trainIds) and running a model over files, folders and globs."""
from __future__ import annotations

import glob
import itertools
import os
import sys
import weakref
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dgcnet.data.dataset import ReportErrors, default_workers
from dgcnet.data.labels import CITYSCAPES, ClassInfo
from dgcnet.data.transforms import normalize, read_image
from dgcnet.models.fast import InferenceModel, optimize_for_inference
from dgcnet.engine.inference import infer_logits, model_device, resolve_tile, runs_whole
from dgcnet.errors import DgcnetError
from dgcnet.io import atomic_write

# --format / --save-pred name -> sub-folder of the output directory.
FORMAT_DIRS = {"labelids": "labelIds", "color": "color", "overlay": "overlay", "trainids": "trainIds",
               "compare": "compare"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"}
OVERLAY_ALPHA = 0.5  # weight of the class colours in the overlay


def parse_formats(text: str) -> tuple[str, ...]:
    """'labelids,color' -> ('labelids', 'color'); unknown names raise DgcnetError."""
    formats = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in formats if f not in FORMAT_DIRS]
    if unknown or not formats:
        raise DgcnetError(f"unknown prediction format {', '.join(unknown) or repr(text)}; "
                          f"choose from {', '.join(FORMAT_DIRS)}")
    return formats


def whole_note(tile: int, path: Path, size: Sequence[int]) -> str:
    return (f"note: images no larger than the {tile}x{tile} tile run whole, in one pass without padding "
            f"(first: {path}, {size[1]}x{size[0]})")


def as_rgb_array(image: str | Path | Image.Image | np.ndarray) -> np.ndarray:
    """A path, PIL image or HxWx3 uint8 RGB array -> HxWx3 uint8 RGB array."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise DgcnetError(f"expected an HxWx3 uint8 RGB array, got shape {array.shape} dtype {array.dtype}")
    return array


ImageLike = Union[str, Path, Image.Image, np.ndarray]
OUTPUTS = ("train_ids", "label_ids", "probs", "color")

# model -> (its weights' identity and versions, its fast copy); dropped with the model.
_FAST_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fast_copy(model: nn.Module) -> nn.Module:
    """``model``'s fast inference copy (:func:`optimize_for_inference`), made once and kept while
    the model lives; made again when its weights change (in place, replaced or moved)."""
    if isinstance(model, InferenceModel):
        return model
    key = tuple((t.data_ptr(), t._version) for t in itertools.chain(model.parameters(), model.buffers()))
    cached = _FAST_COPIES.get(model)
    if cached is None or cached[0] != key:
        cached = (key, optimize_for_inference(model))
        _FAST_COPIES[model] = cached
    return cached[1]


def predict(model: nn.Module, images: ImageLike | Sequence[ImageLike], output: str = "train_ids", *,
            mode: str = "sliding", tile: int | None = None, stride: int | None = None,
            scales: Sequence[float] = (1.0,), flip: bool = False, batch_tiles: int = 4, amp: str = "off",
            fast: bool = True) -> np.ndarray | list[np.ndarray]:
    """Segment one image or several, each at its own size.

    ``images``: a path, PIL image or HxWx3 uint8 RGB array; a list of them (returns a list); or
    an NxHxWx3 uint8 array (returns one array). ``output`` per image:

    - ``train_ids``: (H, W) uint8 class indices (Cityscapes: 0..18);
    - ``label_ids``: (H, W) uint8 ids as the labels store them (Cityscapes labelIds, as the test
      server wants: 7 for road);
    - ``probs``: (classes, H, W) float32 class probabilities (softmax of the averaged logits);
    - ``color``: (H, W, 3) uint8 RGB in the class colours.

    Everything else follows the model's facts (``model.info``): normalisation, classes, and the
    sliding window (tile = training crop; images no larger than the tile run whole). ``fast``
    runs the fast inference copy (BatchNorm folded, channels-last, Winograd on the CPU; logits
    equal within 1e-4 relative), made on the first call and kept while the model lives.
    The model runs on its own device; its train/eval mode is left as it was.
    """
    if output not in OUTPUTS:
        raise DgcnetError(f"unknown output {output!r}; choose one of {', '.join(OUTPUTS)}")
    single = isinstance(images, (str, Path, Image.Image)) or (isinstance(images, np.ndarray) and images.ndim != 4)
    items = [images] if single else list(images)
    info = model.info
    runner = fast_copy(model) if fast else model
    was_training = runner.training
    runner.eval()
    try:
        results = []
        for item in items:
            x = normalize(as_rgb_array(item), info.rgb).to(model_device(runner))
            logits = infer_logits(runner, x, mode=mode, tile=tile, stride=stride, scales=scales, flip=flip,
                                  batch_tiles=batch_tiles, amp=amp)
            if output == "probs":
                results.append(logits.softmax(0).cpu().numpy())
                continue
            train_ids = logits.argmax(0).to(torch.uint8).cpu().numpy()
            if output == "label_ids":
                train_ids = np.asarray(info.label_ids, dtype=np.uint8)[train_ids]
            elif output == "color":
                train_ids = np.asarray(info.palette, dtype=np.uint8)[train_ids]
            results.append(train_ids)
    finally:
        runner.train(was_training)
    if single:
        return results[0]
    return np.stack(results) if isinstance(images, np.ndarray) else results


COMPARE_GAP = 4  # white pixels between the panels of a 'compare' picture


def comparison_row(image: np.ndarray, truth: np.ndarray | None, train_ids: np.ndarray,
                   classes: ClassInfo = CITYSCAPES) -> np.ndarray:
    """HxWx3 panels side by side: the image, the ground truth in class colours (ignored pixels
    black; left out when ``truth`` is None) and the prediction in class colours."""
    gap = np.full((image.shape[0], COMPARE_GAP, 3), 255, dtype=np.uint8)
    panels = [image, gap]
    if truth is not None:
        panels += [classes.colorize(truth.astype(np.uint8)), gap]
    return np.concatenate(panels + [classes.colorize(train_ids)], axis=1)


def encode_prediction(train_ids: np.ndarray, fmt: str, classes: ClassInfo = CITYSCAPES,
                      image: np.ndarray | None = None, truth: np.ndarray | None = None) -> Image.Image:
    """One prediction as a PIL image: 'labelids' (stored ids, as the Cityscapes test server wants),
    'trainids' (8-bit train ids), 'color' (class colours), 'overlay' (colours over ``image``) or
    'compare' (``image`` | ``truth`` train ids, when given | prediction, see :func:`comparison_row`)."""
    if fmt == "labelids":
        return Image.fromarray(classes.train_to_ids(train_ids).astype(np.uint8), mode="L")
    if fmt == "trainids":
        return Image.fromarray(train_ids.astype(np.uint8), mode="L")
    color = classes.colorize(train_ids)
    if fmt == "color":
        return Image.fromarray(color, mode="RGB")
    if fmt == "compare":
        if image is None:
            raise ValueError("the comparison needs the input image")
        return Image.fromarray(comparison_row(image, truth, train_ids, classes), mode="RGB")
    if fmt == "overlay":
        if image is None:
            raise ValueError("the overlay needs the input image")
        mixed = OVERLAY_ALPHA * color.astype(np.float32) + (1 - OVERLAY_ALPHA) * image.astype(np.float32)
        return Image.fromarray(mixed.round().astype(np.uint8), mode="RGB")
    raise ValueError(f"unknown prediction format {fmt!r}")


def prediction_path(output_dir: str | Path, fmt: str, relative: Path) -> Path:
    """Where the prediction of format ``fmt`` named ``relative`` (see :func:`output_names`) goes."""
    return Path(output_dir) / FORMAT_DIRS[fmt] / relative


class PredictionWriter:
    """Writes predictions as ``OUTPUT/<labelIds|color|overlay|trainIds|compare>/<relative>.png`` on
    background threads (PNG encoding overlaps inference); :meth:`close` waits and re-raises errors."""

    def __init__(self, output_dir: str | Path, formats: Sequence[str], classes: ClassInfo = CITYSCAPES,
                 threads: int = 2) -> None:
        self.output_dir = Path(output_dir)
        self.formats = tuple(formats)
        self.classes = classes
        self._pool = ThreadPoolExecutor(max_workers=threads)
        self._pending: list[Future] = []
        self._max_pending = 4 * threads  # each queued item holds a full-size prediction

    def path(self, fmt: str, relative: Path) -> Path:
        return prediction_path(self.output_dir, fmt, relative)

    def submit(self, train_ids: np.ndarray, relative: Path, image_path: Path | None = None,
               image: np.ndarray | None = None, truth: np.ndarray | None = None) -> None:
        """Queue one prediction. The overlay and the comparison use ``image`` or, failing that, read
        ``image_path``; the comparison shows ``truth`` (train ids) when given."""
        waiting = []
        for future in self._pending:
            if future.done():
                future.result()  # re-raises a failed write now rather than at the end
            else:
                waiting.append(future)
        while len(waiting) >= self._max_pending:
            waiting.pop(0).result()
        self._pending = waiting
        self._pending.append(self._pool.submit(self._write, train_ids, relative, image_path, image, truth))

    def _write(self, train_ids: np.ndarray, relative: Path, image_path: Path | None,
               image: np.ndarray | None, truth: np.ndarray | None) -> None:
        for fmt in self.formats:
            if fmt in ("overlay", "compare") and image is None:
                image = read_image(image_path)
            target = self.path(fmt, relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(target) as f:
                encode_prediction(train_ids, fmt, self.classes, image, truth).save(f, format="PNG")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for future in self._pending:
            future.result()
        self._pending = []

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class InputImage:
    path: Path
    relative: Path  # output name, relative to the output format folder


def collect_inputs(paths: Sequence[str]) -> tuple[list[InputImage], list[str]]:
    """Expand files, folders (recursively, image files only) and glob patterns.

    Returns the images, each with its output name (:func:`output_names`), and one error line per
    argument that matched nothing.
    """
    files: list[Path] = []
    errors: list[str] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                errors.append(f"{text}: no image files in this folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif glob.has_magic(text):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not found:
                errors.append(f"{text}: no file matches this pattern")
            files.extend(found)
        else:
            errors.append(f"{text}: no such file or folder")
    unique = list(dict.fromkeys(p.absolute() for p in files))
    return [InputImage(p, n) for p, n in zip(unique, output_names(unique))], errors


def output_names(images: Sequence[Path]) -> list[Path]:
    """Output names of predictions: each image's path relative to the images' common folder, as
    '.png' (Cityscapes val: ``frankfurt/frankfurt_000000_000294_leftImg8bit.png``), so equal file
    names in different folders do not collide."""
    if not images:
        return []
    absolute = [Path(p).absolute() for p in images]
    root = Path(os.path.commonpath([p.parent for p in absolute]))
    relatives = [p.relative_to(root) for p in absolute]
    names = [r.with_suffix(".png") for r in relatives]
    # a.jpg and a.png in one folder would both become a.png: the non-PNG ones keep their full names.
    counts = Counter(names)
    return [r.with_name(r.name + ".png") if counts[n] > 1 and r.suffix.lower() != ".png" else n
            for r, n in zip(relatives, names)]


class _ImageFiles(Dataset):
    """Reads and normalises input images in loader workers: (index, normalised image, the RGB image
    when asked to keep it)."""

    def __init__(self, inputs: Sequence[InputImage], rgb: bool, keep_rgb: bool) -> None:
        self.inputs = inputs
        self.rgb = rgb
        self.keep_rgb = keep_rgb

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, np.ndarray | None]:
        image = read_image(self.inputs[index].path)
        return index, normalize(image, self.rgb), image if self.keep_rgb else None


def predict_files(model: nn.Module, inputs: Sequence[InputImage], output_dir: str | Path,
                  formats: Sequence[str], *, classes: ClassInfo | None = None, mode: str = "sliding",
                  tile: int | None = None, stride: int | None = None, scales: Sequence[float] = (1.0,),
                  flip: bool = False, batch_tiles: int = 4, amp: str = "off", workers: int | None = None,
                  progress: bool = True, note: Callable[[str], None] | None = None) -> list[str]:
    """Predict every input and write the requested formats; returns one error line per image
    that could not be read (the others are still written). ``workers``: loader processes
    (default: :func:`default_workers`). ``classes``, ``tile`` and ``stride`` default to the
    model's (``model.info``); ``note`` hears, once, that images no larger than the tile run whole."""
    model.eval()
    device = model_device(model)
    classes = model.info.classes if classes is None else classes
    if mode == "sliding":
        tile, stride = resolve_tile(model, tile, stride)
    dataset = _ImageFiles(inputs, model.info.rgb, keep_rgb="overlay" in formats)
    workers = default_workers() if workers is None else workers
    loader = DataLoader(ReportErrors(dataset), batch_size=None, num_workers=workers, pin_memory=device.type == "cuda")
    errors: list[str] = []
    with PredictionWriter(output_dir, formats, classes) as writer:
        for item, error in tqdm(loader, total=len(dataset), desc="predict", unit="image",
                                disable=not progress, file=sys.stderr):
            if error is not None:
                errors.append(error)
                continue
            index, x, image = item
            if note is not None and mode == "sliding" and runs_whole(*x.shape[-2:], tile):
                note(whole_note(tile, inputs[index].path, x.shape[-2:]))
                note = None
            logits = infer_logits(model, x.to(device, non_blocking=True), mode=mode, tile=tile, stride=stride,
                                  scales=scales, flip=flip, batch_tiles=batch_tiles, amp=amp)
            train_ids = logits.argmax(0).to(torch.uint8).cpu().numpy()
            # The loader hands the kept RGB image back as a tensor.
            writer.submit(train_ids, inputs[index].relative, image=None if image is None else image.numpy())
    return errors
