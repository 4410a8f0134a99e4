"""Class files: what the label PNGs of users' own data mean.

A class file is YAML or JSON::

    names: [background, road, car]         # class names, in class-index order (required)
    colors: [[0, 0, 0], [128, 64, 128], [0, 0, 142]]  # RGB per class (optional)
    ignore_index: 255                      # label value that is not trained or scored (default 255)
    id_mapping: {0: 0, 7: 1, 26: 2, 1: 255}  # stored pixel value -> class index (optional)

Without ``id_mapping`` the PNGs hold class indices (0..N-1) or ``ignore_index``; with it they
hold the listed values, and any other value is an error in the data.
"""
from __future__ import annotations

import colorsys
import json
from pathlib import Path

import numpy as np
import yaml

from dgcnet.data.labels import IGNORE_INDEX, ClassInfo
from dgcnet.errors import DgcnetError

_KEYS = ("names", "colors", "ignore_index", "id_mapping")


def default_colors(count: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct colours (evenly spaced hues) for classes without given colours."""
    return tuple(tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(i / count, 0.75, 0.9))  # type: ignore[misc]
                 for i in range(count))


class _Reader:
    """Checks values of a composed YAML node tree, naming file:line in every error."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, node: yaml.Node, message: str) -> DgcnetError:
        return DgcnetError(f"{self.path}:{node.start_mark.line + 1}: {message}")

    def integer(self, node: yaml.Node, what: str, low: int, high: int) -> int:
        if not (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":int")):
            raise self.fail(node, f"{what} must be an integer, got {node.value!r}")
        value = yaml.safe_load(node.value)  # YAML's own integer syntax (e.g. 0x1f)
        if not low <= value <= high:
            raise self.fail(node, f"{what} must be in {low}..{high}, got {value}")
        return value

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, f"{what} must be a list")
        return node.value


def _compose(path: Path) -> yaml.Node:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise DgcnetError(f"{path}: cannot read class file ({error})") from None
    if path.suffix.lower() == ".json":
        try:
            json.loads(text)
        except json.JSONDecodeError as error:
            raise DgcnetError(f"{path}:{error.lineno}: invalid JSON: {error.msg}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise DgcnetError(f"{path}{line}: invalid YAML: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise DgcnetError(f"{path}: invalid YAML: {error}") from None
    if not isinstance(root, yaml.MappingNode):
        raise DgcnetError(f"{path}:1: expected a mapping with the keys {', '.join(_KEYS)}")
    return root


def load_class_file(path: str | Path) -> ClassInfo:
    """Read a YAML or JSON class file into a ClassInfo; errors name the file and line."""
    path = Path(path)
    root = _compose(path)
    r = _Reader(path)
    fields: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, value in root.value:
        if key.value not in _KEYS:
            raise r.fail(key, f"unknown key {key.value!r}; expected {', '.join(_KEYS)}")
        if key.value in fields:
            raise r.fail(key, f"{key.value!r} given twice")
        fields[key.value] = (key, value)
    if "names" not in fields:
        raise r.fail(root, "missing 'names' (the list of class names)")

    name_nodes = r.sequence(fields["names"][1], "names")
    if not name_nodes:
        raise r.fail(fields["names"][1], "names must not be empty")
    names = []
    for node in name_nodes:
        if not isinstance(node, yaml.ScalarNode) or not node.value:
            raise r.fail(node, "each class name must be a non-empty string")
        if node.value in names:
            raise r.fail(node, f"class name {node.value!r} given twice")
        names.append(node.value)
    if len(names) > 255:
        raise r.fail(fields["names"][1], f"at most 255 classes are supported, got {len(names)}")

    ignore_index = IGNORE_INDEX
    if "ignore_index" in fields:
        ignore_index = r.integer(fields["ignore_index"][1], "ignore_index", 0, 255)
        if ignore_index < len(names):
            raise r.fail(fields["ignore_index"][1],
                         f"ignore_index {ignore_index} is a class index (there are {len(names)} classes)")

    colors = default_colors(len(names))
    if "colors" in fields:
        color_nodes = r.sequence(fields["colors"][1], "colors")
        if len(color_nodes) != len(names):
            raise r.fail(fields["colors"][1], f"{len(color_nodes)} colors for {len(names)} names")
        parsed = []
        for node in color_nodes:
            channels = r.sequence(node, "each color")
            if len(channels) != 3:
                raise r.fail(node, f"each color must be [R, G, B], got {len(channels)} values")
            parsed.append(tuple(r.integer(c, "a color value", 0, 255) for c in channels))
        colors = tuple(parsed)  # type: ignore[assignment]

    id_to_train, valid_ids = None, tuple(range(len(names))) + (ignore_index,)
    if "id_mapping" in fields:
        mapping_node = fields["id_mapping"][1]
        if not isinstance(mapping_node, yaml.MappingNode) or not mapping_node.value:
            raise r.fail(mapping_node, "id_mapping must be a non-empty mapping {stored id: class index}")
        id_to_train = np.full(256, ignore_index, dtype=np.uint8)
        seen: list[int] = []
        for key, value in mapping_node.value:
            stored = r.integer(key, "a stored id", 0, 255)
            if stored in seen:
                raise r.fail(key, f"stored id {stored} mapped twice")
            target = r.integer(value, "a class index", 0, 255)
            if target >= len(names) and target != ignore_index:
                raise r.fail(value, f"class index {target} is neither a class (0..{len(names) - 1}) "
                                    f"nor ignore_index {ignore_index}")
            id_to_train[stored] = target
            seen.append(stored)
        valid_ids = tuple(sorted(seen))
    return ClassInfo(names=tuple(names), colors=colors, ignore_index=ignore_index,
                     id_to_train=id_to_train, valid_ids=valid_ids)
