"""ModelInfo: the facts every model carries, their round trips, and the published protocol they keep."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

import dgcnet
from dgcnet.data.labels import CITYSCAPES
from dgcnet.engine.inference import infer_logits
from dgcnet.errors import DgcnetError
from dgcnet.models import ModelInfo, classes_info, default_info
from dgcnet.data.classes import load_class_file


def test_every_built_model_carries_the_published_facts():
    model = dgcnet.build_model("dgcnet_r18")
    info = model.info
    assert info == default_info("dgcnet_r18") and model.arch == "dgcnet_r18" and model.num_classes == 19
    assert info.class_names == CITYSCAPES.names and info.palette == CITYSCAPES.colors
    assert info.label_ids == (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
    assert (info.rgb, info.crop_size, info.tile, info.stride) == (True, (832, 832), 832, 555)
    assert not hasattr(model, "rgb") and not hasattr(model, "class_names")
    with pytest.raises(Exception):
        info.rgb = False  # frozen
    with pytest.raises(DgcnetError, match="not dgcnet_r18 with 19"):
        dgcnet.build_model("dgcnet_r18", info=default_info("dgcnet_r34"))


def test_tile_follows_the_training_crop():
    info = classes_info("dgcnet_r18", CITYSCAPES, crop_size=(128, 128))
    assert (info.tile, info.stride) == (128, 86)
    info = classes_info("dgcnet_r18", CITYSCAPES, crop_size=(512, 1024))
    assert (info.tile, info.stride) == (1024, 683)


@pytest.mark.parametrize("rgb", [True, False])
def test_metadata_and_plain_values_round_trip(tmp_path, rgb):
    path = tmp_path / "pets.yaml"
    path.write_text("names: [background, cat, dog]\nignore_index: 9\nid_mapping: {0: 0, 5: 1, 7: 2, 1: 9}\n")
    info = classes_info("dgcnet_r34", load_class_file(path), rgb=rgb, crop_size=(65, 97))
    assert info.label_ids == (0, 5, 7) and info.ignore_index == 9
    assert ModelInfo.from_metadata(info.to_metadata(), "x") == (info, [])
    assert ModelInfo.from_values(info.to_dict(), "x") == (info, [])
    classes = info.classes
    np.testing.assert_array_equal(classes.to_train_ids(np.array([0, 5, 7, 1], dtype=np.uint8)), [0, 1, 2, 9])


def test_older_metadata_gets_the_published_rest_and_says_which():
    old = {"arch": "dgcnet_r18", "num_classes": "19", "class_names": '["road"' + ', "x"' * 18 + "]", "rgb": "false"}
    info, missing = ModelInfo.from_metadata(old, "old.safetensors")
    assert missing == ["palette", "label_ids", "ignore_index", "crop_size", "tile", "stride"]
    assert (info.rgb, info.tile, info.stride, info.label_ids[:3]) == (False, 832, 555, (0, 1, 2))
    with pytest.raises(DgcnetError, match="bad.safetensors: metadata 'num_classes' is not valid JSON"):
        ModelInfo.from_metadata({**old, "num_classes": "nineteen"}, "bad.safetensors")


class ShapeProbe(nn.Module):
    """Records the size of every batch it sees; stride-8 'logits' of 19 classes."""

    def __init__(self, info: ModelInfo) -> None:
        super().__init__()
        self.info = info
        self.anchor = nn.Parameter(torch.zeros(()))
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        return x[:, :1, ::8, ::8].repeat(1, 19, 1, 1)


def test_published_protocol_on_cityscapes_is_unchanged():
    """Published facts, a 1024x2048 image: 8 tiles of 832 (y 0/192, x 0/555/1110/1216), one scale, no flip."""
    probe = ShapeProbe(default_info("dgcnet_r101"))
    infer_logits(probe, torch.zeros(3, 1024, 2048), batch_tiles=8)
    assert probe.seen == [(8, 3, 832, 832)]


def test_an_image_smaller_than_the_tile_runs_whole():
    probe = ShapeProbe(replace(default_info("dgcnet_r18"), crop_size=(128, 128), tile=128, stride=86))
    infer_logits(probe, torch.zeros(3, 100, 120))
    assert probe.seen == [(1, 3, 100, 120)]  # not padded to 128x128
    probe.seen.clear()
    infer_logits(probe, torch.zeros(3, 100, 256))  # wider than the tile: tiles, padded in height
    assert probe.seen == [(3, 3, 128, 128)]
