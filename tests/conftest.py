from pathlib import Path

import numpy as np
import pytest
import torch

# Reference files the tests compare against (what each is: fixtures/README.md).
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def one_thread():
    """Small tensors: one thread is faster, and it is what a DataLoader worker uses."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_camvid_like(root: Path, splits: dict[str, int], size: tuple[int, int] = (48, 64), seed: int = 0) -> Path:
    """Made-up files in CamVid's published layout: ``<split>/*.png`` RGB images, ``<split>annot/*.png``
    labels holding 0..10 and the void value 11, and ``<split>.txt`` lists whose paths start with
    the published ``/SegNet/CamVid/`` prefix. Sky on top, road below, a car between, a void strip."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size
    colors = np.array([[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
                       [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192], [0, 0, 0]], np.uint8)
    for split, count in splits.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(count):
            label = np.full((h, w), 3, np.uint8)
            label[: h // 3] = 0
            top, left = int(rng.integers(h // 3, h // 2)), int(rng.integers(0, w // 2))
            label[top:top + h // 4, left:left + w // 3] = 8
            label[:, -2:] = 11
            image = np.clip(colors[label].astype(np.int16) + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)
            name = f"0001TP_{i:06d}.png"
            Image.fromarray(image).save(root / split / name)
            Image.fromarray(label).save(root / f"{split}annot" / name)
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}\n")
        (root / f"{split}.txt").write_text("".join(lines))
    return root


@pytest.fixture(scope="session")
def camvid_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny made-up dataset in CamVid's layout: 4 train and 2 val images of 48x64."""
    return write_camvid_like(tmp_path_factory.mktemp("camvid"), {"train": 4, "val": 2})
