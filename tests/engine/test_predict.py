import numpy as np
import pytest
import torch
from PIL import Image

import dgcnet
from dgcnet.cli import main
from dgcnet.engine.predict import collect_inputs, encode_prediction, output_names, parse_formats
from dgcnet.errors import DgcnetError
from tests.engine.test_evaluate import calibrated_r18, save_train_checkpoint


@pytest.fixture(scope="module")
def model():
    return calibrated_r18()


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "r18.pth"
    save_train_checkpoint(model, path)
    return path


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_predict_api_accepts_path_pil_and_array(model, tmp_path):
    image = random_rgb(37, 45)
    Image.fromarray(image).save(tmp_path / "x.png")
    from_array = dgcnet.predict(model, image, mode="whole", fast=False)
    assert from_array.shape == (37, 45) and from_array.dtype == np.uint8 and from_array.max() < 19
    np.testing.assert_array_equal(dgcnet.predict(model, tmp_path / "x.png", mode="whole", fast=False), from_array)
    np.testing.assert_array_equal(dgcnet.predict(model, str(tmp_path / "x.png"), mode="whole", fast=False),
                                  from_array)
    np.testing.assert_array_equal(dgcnet.predict(model, Image.fromarray(image), mode="whole", fast=False),
                                  from_array)
    # The argmax of the logits, computed here without the predict code path.
    from dgcnet.data.transforms import normalize
    with torch.no_grad():
        logits = torch.nn.functional.interpolate(model(normalize(image)[None]), size=(37, 45), mode="bilinear",
                                                 align_corners=True)
    np.testing.assert_array_equal(from_array, logits[0].argmax(0).numpy())


def test_predict_api_outputs_lists_and_batches(model, tmp_path):
    images = [random_rgb(37, 45, 1), random_rgb(40, 44, 2)]
    Image.fromarray(images[1]).save(tmp_path / "b.png")
    train_ids = dgcnet.predict(model, [images[0], tmp_path / "b.png"])
    assert [t.shape for t in train_ids] == [(37, 45), (40, 44)]
    label_ids = dgcnet.predict(model, images[0], "label_ids")
    np.testing.assert_array_equal(label_ids, dgcnet.CITYSCAPES.train_to_ids(train_ids[0]))
    assert label_ids.min() >= 7  # labelIds: road is 7
    color = dgcnet.predict(model, images[0], "color")
    np.testing.assert_array_equal(color, dgcnet.CITYSCAPES.colorize(train_ids[0]))
    probs = dgcnet.predict(model, images[0], "probs")
    assert probs.shape == (19, 37, 45) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(0), train_ids[0])
    batch = np.stack([images[0], random_rgb(37, 45, 3)])
    stacked = dgcnet.predict(model, batch)
    assert stacked.shape == (2, 37, 45) and stacked.dtype == np.uint8
    np.testing.assert_array_equal(stacked[0], train_ids[0])
    with pytest.raises(DgcnetError, match="unknown output 'logits'"):
        dgcnet.predict(model, images[0], "logits")


def test_predict_runs_the_fast_copy_made_once(monkeypatch):
    from dgcnet.engine import predict as predict_module

    model = calibrated_r18()  # no copy made yet
    made = []
    real = predict_module.optimize_for_inference
    monkeypatch.setattr(predict_module, "optimize_for_inference", lambda m: made.append(1) or real(m))
    image = random_rgb(33, 47)
    first = dgcnet.predict(model, image, mode="whole")
    dgcnet.predict(model, image, mode="whole")
    assert made == [1] and not model.training
    # Same labels as the plain model (the fast copy equals it within 1e-4 relative).
    assert (first == dgcnet.predict(model, image, mode="whole", fast=False)).mean() >= 0.999
    # Changed weights make a new copy: the predictions follow the weights.
    with torch.no_grad():
        model.head.bottleneck[3].weight.zero_()
        model.head.bottleneck[3].bias.zero_()[5] = 1
    assert (dgcnet.predict(model, image, mode="whole") == 5).all() and made == [1, 1]


def test_predict_api_rejects_other_arrays(model):
    with pytest.raises(DgcnetError, match="HxWx3 uint8"):
        dgcnet.predict(model, np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(DgcnetError, match="HxWx3 uint8"):
        dgcnet.predict(model, np.zeros((8, 8, 3), dtype=np.float32))


def test_encodings():
    train = np.array([[0, 1, 18], [255, 10, 13]], dtype=np.uint8)
    # trainId -> labelId from DESIGN.md section 2; ignore is written as 0 ("unlabeled").
    np.testing.assert_array_equal(np.asarray(encode_prediction(train, "labelids")), [[7, 8, 33], [0, 23, 26]])
    np.testing.assert_array_equal(np.asarray(encode_prediction(train, "trainids")), train)
    color = np.asarray(encode_prediction(train, "color"))
    assert tuple(color[0, 0]) == (128, 64, 128) and tuple(color[1, 2]) == (0, 0, 142)
    image = np.full((2, 3, 3), 100, dtype=np.uint8)
    overlay = np.asarray(encode_prediction(train, "overlay", image=image))
    assert tuple(overlay[0, 0]) == (114, 82, 114)  # (128 + 100) / 2, (64 + 100) / 2, (128 + 100) / 2


def test_parse_formats():
    assert parse_formats("color, labelids,color") == ("color", "labelids")
    with pytest.raises(DgcnetError, match="jpeg"):
        parse_formats("color,jpeg")


def test_output_names_keep_folders_apart(tmp_path):
    files = [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", tmp_path / "b" / "c" / "y.jpg",
             tmp_path / "b" / "c" / "y.png"]
    assert [n.as_posix() for n in output_names(files)] == ["a/x.png", "b/x.png", "b/c/y.jpg.png", "b/c/y.png"]
    assert [n.as_posix() for n in output_names([tmp_path / "one.jpg"])] == ["one.png"]


def test_collect_inputs_from_files_folders_and_globs(tmp_path):
    for rel in ("d/a.png", "d/sub/b.jpg", "d/notes.txt", "e/c.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    inputs, errors = collect_inputs([str(tmp_path / "d"), str(tmp_path / "e" / "*.png"), str(tmp_path / "nope")])
    assert [i.relative.as_posix() for i in inputs] == ["d/a.png", "d/sub/b.png", "e/c.png"]
    assert errors == [f"{tmp_path / 'nope'}: no such file or folder"]


def test_predict_command_on_mixed_inputs(checkpoint, tmp_path, capsys):
    src = tmp_path / "in"
    (src / "one").mkdir(parents=True)
    (src / "two").mkdir()
    sizes = {}
    Image.fromarray(random_rgb(30, 41, 1)).save(src / "one" / "same.png")
    sizes["one/same.png"] = (41, 30)
    Image.fromarray(random_rgb(47, 33, 2)).convert("RGBA").save(src / "two" / "same.png")
    sizes["two/same.png"] = (33, 47)
    Image.fromarray(random_rgb(25, 36, 3)[:, :, 0], mode="L").save(src / "two" / "grey.png")
    sizes["two/grey.png"] = (36, 25)
    Image.fromarray((np.arange(20 * 28, dtype=np.uint16).reshape(20, 28) * 100)).save(src / "two" / "deep.png")
    sizes["two/deep.png"] = (28, 20)
    Image.fromarray(random_rgb(29, 31, 4)).save(src / "one" / "photo.jpg", quality=90)
    sizes["one/photo.png"] = (31, 29)
    (src / "two" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    status = main(["predict", str(src / "one"), str(src / "two"), "--restore-from", str(checkpoint),
                   "--output-dir", str(out), "--format", "color,labelids,overlay,trainids", "--tile", "33",
                   "--workers", "0"])
    captured = capsys.readouterr()
    assert status == 1
    assert [line for line in captured.err.splitlines() if "broken.png" in line] == [
        line for line in captured.err.splitlines() if line.strip()]
    assert len(captured.err.strip().splitlines()) == 1
    assert "5 of 6 images" in captured.out
    for folder, mode in (("color", "RGB"), ("labelIds", "L"), ("overlay", "RGB"), ("trainIds", "L")):
        written = sorted(p.relative_to(out / folder).as_posix() for p in (out / folder).rglob("*.png"))
        assert written == sorted(sizes)
        for rel, size in sizes.items():
            with Image.open(out / folder / rel) as im:
                assert im.size == size and im.mode == mode


def test_predict_command_with_a_glob_and_nothing_found(checkpoint, tmp_path, capsys):
    Image.fromarray(random_rgb(20, 24)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "*.png"), "--restore-from", str(checkpoint), "--output-dir", str(out),
                 "--mode", "whole", "--workers", "0"]) == 0
    assert (out / "color" / "a.png").is_file()
    assert main(["predict", str(tmp_path / "*.jpg"), "--restore-from", str(checkpoint),
                 "--output-dir", str(out)]) == 1
    assert "no file matches" in capsys.readouterr().err


def test_readme_example_runs(capsys):
    from pathlib import Path
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = re.search(r"A runnable example.*?```python\n(.*?)```", readme, re.S).group(1)
    with pytest.warns(UserWarning, match="random weights"):
        exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.splitlines()[-1] == "[(64, 96), (48, 80)] (64, 96) (2, 19, 64, 96)"
