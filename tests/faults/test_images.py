"""Images that cannot be decoded, or are too large to decode: one line naming the file;
predict skips such an image and writes the others."""
import numpy as np
import pytest

from dgcnet.cli import main
from dgcnet.data.check import check_list
from dgcnet.data.dataset import SegmentationDataset
from dgcnet.data.transforms import MAX_PIXELS, MAX_PIXELS_ENV, read_image, read_label
from dgcnet.engine.predict import collect_inputs, predict_files
from dgcnet.errors import DgcnetError
from tests.faults.conftest import BAD_IMAGES, bomb_png, png_bytes


@pytest.mark.parametrize("kind", BAD_IMAGES)
def test_undecodable_image_is_one_line_naming_it(tmp_path, kind):
    path = tmp_path / "bad.png"
    path.write_bytes(BAD_IMAGES[kind]())
    for reader in (read_image, read_label):
        with pytest.raises(DgcnetError) as error:
            reader(path)
        message = str(error.value)
        assert message.startswith(f"{path}: ") and "\n" not in message


def test_data_check_and_dataset_name_the_list_line(tmp_path):
    (tmp_path / "good.png").write_bytes(png_bytes())
    (tmp_path / "bad.png").write_bytes(BAD_IMAGES["broken chunk (SyntaxError)"]())
    (tmp_path / "list.txt").write_text("good.png\nbad.png\n")
    result = check_list(tmp_path, tmp_path / "list.txt")
    assert [(p.line, p.path.name) for p in result.problems] == [(2, "bad.png")]
    dataset = SegmentationDataset(tmp_path, tmp_path / "list.txt")
    dataset[0]
    with pytest.raises(DgcnetError, match=r"list.txt:2: .*bad.png: cannot read image"):
        dataset[1]


def test_predict_skips_undecodable_images_and_writes_the_others(tmp_path, tiny_model):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.png").write_bytes(png_bytes(seed=1))
    for i, make in enumerate(BAD_IMAGES.values()):
        (inputs / f"b{i}.png").write_bytes(make())
    (inputs / "c.png").write_bytes(png_bytes(seed=2))
    images, errors = collect_inputs([str(inputs)])
    failures = predict_files(tiny_model, images, tmp_path / "out", ("trainids",), mode="whole", workers=0,
                             progress=False)
    assert not errors
    assert len(failures) == len(BAD_IMAGES)
    assert all(line.startswith(str(inputs / "b")) and "\n" not in line for line in failures)
    assert sorted(p.name for p in (tmp_path / "out" / "trainIds").iterdir()) == ["a.png", "c.png"]


def test_images_above_the_pixel_limit_are_refused_before_decoding(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png())  # 12000x12000 in a few hundred bytes
    assert bomb.stat().st_size < 1000 and 12000 * 12000 > MAX_PIXELS
    with pytest.raises(DgcnetError, match=r"bomb.png: image of 12000x12000 = 144,000,000 pixels is above the limit"):
        read_image(bomb)
    with pytest.raises(DgcnetError, match="above the limit"):
        read_label(bomb)

    small = tmp_path / "small.png"
    small.write_bytes(png_bytes(32, 64))
    monkeypatch.setenv(MAX_PIXELS_ENV, "2047")
    with pytest.raises(DgcnetError, match="2,048 pixels is above the limit of 2,047"):
        read_image(small)
    monkeypatch.setenv(MAX_PIXELS_ENV, "2048")
    assert read_image(small).shape == (32, 64, 3)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(DgcnetError, match=f"{MAX_PIXELS_ENV}='lots'"):
        read_image(small)


def test_predict_cli_max_pixels(tmp_path, monkeypatch, capsys, tiny_model):
    from safetensors.torch import save_file

    from dgcnet.formats.convert import release_metadata

    weights = tmp_path / "w.safetensors"
    save_file(tiny_model.state_dict(), str(weights),
              metadata=release_metadata(tiny_model.info))
    (tmp_path / "a.png").write_bytes(png_bytes(32, 64))
    (tmp_path / "big.png").write_bytes(png_bytes(64, 64))
    monkeypatch.setenv(MAX_PIXELS_ENV, str(MAX_PIXELS))  # restored after the test: main() sets it
    status = main(["predict", "--restore-from", str(weights), str(tmp_path / "a.png"), str(tmp_path / "big.png"),
                   "--output-dir", str(tmp_path / "out"), "--mode", "whole", "--workers", "0", "--device", "cpu",
                   "--max-pixels", "3000"])
    err = capsys.readouterr().err
    assert status == 1
    assert f"{tmp_path / 'big.png'}: image of 64x64 = 4,096 pixels is above the limit of 3,000" in err
    assert (tmp_path / "out" / "color" / "a.png").is_file()
    assert not (tmp_path / "out" / "color" / "big.png").exists()
    assert np.asarray(read_image(tmp_path / "out" / "color" / "a.png")).shape == (32, 64, 3)
