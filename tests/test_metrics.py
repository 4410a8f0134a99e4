import numpy as np
import pytest
import torch

from dgcnet.metrics import (class_table, confusion_heatmap, confusion_matrix, format_table, iou_per_class,
                            mean_iou, pixel_accuracy, write_table_csv)


def test_confusion_matrix_counts_every_labelled_pixel_once():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 5, size=(37, 53))
    label[rng.random(label.shape) < 0.2] = 255
    pred = rng.integers(0, 5, size=label.shape)
    expected = np.zeros((5, 5), dtype=np.int64)
    for t, p in zip(label.ravel(), pred.ravel()):
        if t != 255:
            expected[t, p] += 1
    got = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(label), 5).numpy()
    np.testing.assert_array_equal(got, expected)
    assert got.sum() == (label != 255).sum()


def test_confusion_matrix_rejects_labels_outside_the_classes():
    label = torch.tensor([[0, 1], [7, 255]])
    with pytest.raises(ValueError, match="0..4"):
        confusion_matrix(torch.zeros_like(label), label, 5)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(3, 3), label, 5)


def test_iou_by_hand():
    # class 0: tp 3, row 4, column 5 -> 3 / 6; class 1: tp 4, row 6, column 5 -> 4 / 7;
    # class 2 never labelled nor predicted -> 0 (max(1, union)), and it counts in the mean.
    confusion = np.array([[3, 1, 0], [2, 4, 0], [0, 0, 0]])
    np.testing.assert_allclose(iou_per_class(confusion), [0.5, 4 / 7, 0.0])
    assert mean_iou(confusion) == pytest.approx((0.5 + 4 / 7) / 3)
    assert pixel_accuracy(confusion) == pytest.approx(7 / 10)


def test_tables(tmp_path):
    confusion = np.array([[3, 1], [2, 4]])
    iou = iou_per_class(confusion)
    rows = class_table(("road", "sky"), iou, confusion)
    assert rows[1] == {"class": "sky", "iou": pytest.approx(4 / 7), "label_pixels": 6, "pred_pixels": 5}
    text = format_table(rows, float(iou.mean()))
    assert "sky" in text and f"{100 * 4 / 7:6.2f}" in text and text.splitlines()[-1].startswith("mean")
    markdown = format_table(rows, float(iou.mean()), markdown=True)
    assert markdown.splitlines()[2] == "| road | 50.00 | 4 | 5 |"
    write_table_csv(rows, tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text().splitlines()[1] == "road,0.500000,4,5"


def test_heatmap_is_darker_where_the_row_fraction_is_larger():
    confusion = np.array([[9, 1], [0, 5]])
    image = np.asarray(confusion_heatmap(confusion, ("a", "b"), cell=10))
    width = image.shape[1]
    left = width - 2 * 10 - 1  # the grid sits at the right edge
    top = 16
    cell = lambda r, c: image[top + r * 10 + 5, left + c * 10 + 5].astype(int)  # noqa: E731
    assert cell(0, 0).sum() < cell(0, 1).sum()  # 0.9 darker than 0.1
    assert tuple(cell(1, 0)) == (255, 255, 255)  # 0 is white
    assert tuple(cell(1, 1)) == (8, 48, 107)  # 1 is the dark end
