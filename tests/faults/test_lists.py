"""Data lists: a byte order mark, paths with spaces, and labels outside the classes."""
import shutil

import numpy as np
import pytest
from PIL import Image

from dgcnet.data.check import check_list
from dgcnet.data.dataset import SegmentationDataset, read_list
from dgcnet.data.classes import load_class_file
from dgcnet.errors import DgcnetError
from tests.faults.conftest import png_bytes


def test_byte_order_mark_is_ignored(tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes())
    (tmp_path / "list.txt").write_bytes("\ufeffa.png\n".encode("utf-8"))
    assert [s.image for s in read_list(tmp_path / "list.txt", tmp_path)] == [tmp_path / "a.png"]
    assert check_list(tmp_path, tmp_path / "list.txt").ok


def test_paths_with_spaces_in_tab_separated_lists(tmp_path):
    folder = tmp_path / "my photos"
    folder.mkdir()
    (folder / "a b.png").write_bytes(png_bytes())
    Image.fromarray(np.zeros((32, 64), dtype=np.uint8)).save(folder / "a b label.png")
    (tmp_path / "list.txt").write_text("my photos/a b.png\tmy photos/a b label.png\n")
    samples = read_list(tmp_path / "list.txt", tmp_path)
    assert (samples[0].image, samples[0].label) == (folder / "a b.png", folder / "a b label.png")
    assert check_list(tmp_path, tmp_path / "list.txt").ok
    image, label, _ = SegmentationDataset(tmp_path, tmp_path / "list.txt")[0]
    assert image.shape == (3, 32, 64) and label.shape == (32, 64)


CLASSES = "names: [background, cat, dog]\n"  # no id_mapping: PNGs hold 0..2 or 255


def test_label_values_outside_the_classes_stop_before_the_loss(tmp_path, trained_run):
    from dgcnet.config import load_config
    from dgcnet.engine.train import train
    from tests.faults.conftest import tiny_overrides

    _, data_list = trained_run
    data = tmp_path / "data"
    shutil.copytree(data_list.parent, data)
    (data / "classes.yaml").write_text(CLASSES)
    for i in range(2):
        label = np.zeros((40, 48), dtype=np.uint8)
        label[:8] = 7 if i == 1 else 1
        Image.fromarray(label).save(data / f"lab/{i}.png")
    classes = load_class_file(data / "classes.yaml")
    result = check_list(data, data / "train.txt", classes=classes)
    assert [str(p) for p in result.problems] == [f"{data / 'train.txt'}:2: {data / 'lab/1.png'}: label ids outside "
                                                 f"the known set: 7"]
    with pytest.raises(DgcnetError, match=r"train.txt:2: .*lab/1.png: label value\(s\) 7 are not classes \(0..2\)"):
        SegmentationDataset(data, data / "train.txt", classes=classes, train=True, crop_size=(32, 32))[1]
    overrides = tiny_overrides(data / "train.txt", tmp_path / "run", steps=2,
                               **{"data.classes": data / "classes.yaml", "model.num_classes": 3})
    with pytest.raises(DgcnetError, match=r"train.txt:2: .*label value\(s\) 7 are not classes"):
        train(load_config(None, overrides))
