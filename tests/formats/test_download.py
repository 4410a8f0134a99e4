"""Weights by URL from a server on 127.0.0.1 that the test starts: downloaded once into the torch
hub cache (redirected to a temporary folder), resumed after a cut, pinned by SHA-256."""
import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import dgcnet
from dgcnet.engine.train import restore_weights
from dgcnet.errors import DgcnetError
from dgcnet.formats.convert import write_weights
from dgcnet.formats.download import cache_path, download
from dgcnet.models import build_model, default_info

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def hub_cache(tmp_path, monkeypatch) -> Path:
    """The torch hub cache in a temporary folder: the user's own cache is never touched."""
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def released_bytes(tmp_path_factory, r18_state) -> bytes:
    path = tmp_path_factory.mktemp("w") / "r18.safetensors"
    info = replace(default_info("dgcnet_r18"), class_names=tuple(f"c{i}" for i in range(19)))
    write_weights(r18_state, path, "dgcnet", info=info)
    return path.read_bytes()


def _url(file_server, path: str) -> str:
    return f"http://127.0.0.1:{file_server.server_address[1]}{path}"


def _same(model, state):
    return all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_load_model_by_url_downloads_once_into_the_hub_cache(file_server, hub_cache, released_bytes, r18_state):
    file_server.files["/w/r18.safetensors"] = released_bytes
    url = _url(file_server, "/w/r18.safetensors")
    model = dgcnet.load_model(url)
    assert model.arch == "dgcnet_r18" and model.info.class_names[0] == "c0" and _same(model, r18_state)
    cached = cache_path(url)
    assert cached.parent == hub_cache and cached.name.endswith("-r18.safetensors")
    assert cached.read_bytes() == released_bytes and sorted(p.name for p in hub_cache.iterdir()) == [cached.name, cached.name + ".lock"]
    dgcnet.load_model(url)
    assert len(file_server.requests) == 1  # the second load reads the cache


def test_interrupted_download_resumes_with_a_range_request(file_server, hub_cache, released_bytes):
    file_server.files["/r18.safetensors"] = released_bytes
    file_server.cut["/r18.safetensors"] = 100_000
    url = _url(file_server, "/r18.safetensors")
    with pytest.raises(DgcnetError, match="interrupted at 100000 of .* run again to continue"):
        download(url)
    partial = cache_path(url).with_name(cache_path(url).name + ".partial")
    assert partial.stat().st_size == 100_000 and not cache_path(url).exists()
    assert download(url).read_bytes() == released_bytes
    assert file_server.requests == [("/r18.safetensors", None), ("/r18.safetensors", "bytes=100000-")]
    assert not partial.exists()


def test_pinned_url_refuses_other_content_and_keeps_nothing(file_server, hub_cache, released_bytes, r18_state):
    file_server.files["/r18.safetensors"] = released_bytes
    good = hashlib.sha256(released_bytes).hexdigest()
    url = _url(file_server, "/r18.safetensors")
    with pytest.raises(DgcnetError, match=f"refused: the downloaded file has SHA-256 {good}, not the pinned 0+; "
                                          f"nothing was kept"):
        dgcnet.load_model(f"{url}#sha256={'0' * 64}")
    assert [p.name for p in hub_cache.iterdir() if not p.name.endswith(".lock")] == []
    model = dgcnet.load_model(f"{url}#sha256={good.upper()}")
    assert _same(model, r18_state)
    with pytest.raises(DgcnetError, match="#sha256=<64 hex digits>"):
        download(f"{url}#md5=abc")


def test_restore_from_and_torch_hub_take_urls(file_server, released_bytes, r18_state):
    file_server.files["/r18.safetensors"] = released_bytes
    url = _url(file_server, "/r18.safetensors")
    model = build_model("dgcnet_r18")
    assert "loaded" in restore_weights(model, url) and _same(model, r18_state)
    hub_model = torch.hub.load(str(REPO), "dgcnet_r18", source="local", weights=url, trust_repo=True)
    assert _same(hub_model, r18_state)
    assert len(file_server.requests) == 1


def test_missing_url_is_one_line(file_server):
    with pytest.raises(DgcnetError, match=r"nothere.pth: download failed: HTTP 404"):
        dgcnet.load_model(_url(file_server, "/nothere.pth"))
