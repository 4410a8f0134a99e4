"""Where weights come from: a file, a URL (downloaded once into the torch hub cache, resumable,
optionally pinned), a Hugging Face model folder or repository (``hf://OWNER/NAME``).

``https://host/path/name.pth#sha256=<hex>`` is downloaded to
``torch.hub.get_dir()/checkpoints/<8 hex of the URL's hash>-name.pth`` (the URL's hash keeps
two files of one name, e.g. two repositories' ``model.safetensors``, apart). A download goes to
``<that>.partial`` first and continues from where it stopped (an HTTP Range request) when run
again. With ``#sha256=`` the file must have that SHA-256: a file that does not is refused and
not kept.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import urllib.parse
from pathlib import Path
from typing import Iterator

from dgcnet.data.fetch import fetch_rest, is_url, sha256_of
from dgcnet.errors import DgcnetError

def split_url(url: str) -> tuple[str, str | None]:
    """(the URL to fetch, the pinned SHA-256 in lower case or None) of ``URL[#sha256=HEX]``."""
    address, _, fragment = url.partition("#")
    if not fragment:
        return address, None
    key, _, value = fragment.partition("=")
    value = value.strip().lower()
    if key != "sha256" or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise DgcnetError(f"{url}: the URL fragment must be #sha256=<64 hex digits>, got #{fragment}")
    return address, value


def cache_path(url: str) -> Path:
    """Where the file of ``url`` is kept in the torch hub cache."""
    import torch.hub

    address, _ = split_url(url)
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(address).path)).name or "weights"
    tag = hashlib.sha256(address.encode()).hexdigest()[:8]
    return Path(torch.hub.get_dir()) / "checkpoints" / f"{tag}-{name}"


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """One process at a time downloads a file (several training processes may ask at once)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def download(url: str, *, progress: bool | None = None, timeout: float = 60.0) -> Path:
    """The local file of ``url``: downloaded into the torch hub cache unless it is there already.

    A ``#sha256=HEX`` fragment pins the content: a cached or downloaded file with another hash is
    deleted and the call fails. ``progress`` (default: when stderr is a terminal) shows a bar.
    """
    address, expected = split_url(url)
    target = cache_path(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    progress = sys.stderr.isatty() if progress is None else progress
    with _exclusive(target):
        if target.is_file() and (expected is None or sha256_of(target) == expected):
            return target
        target.unlink(missing_ok=True)  # a cached file that does not match the pin
        partial = target.with_name(target.name + ".partial")
        if not progress:
            print(f"downloading {address} -> {target}", file=sys.stderr)
        fetch_rest(address, partial, timeout, progress)
        if expected is not None:
            got = sha256_of(partial)
            if got != expected:
                partial.unlink()
                raise DgcnetError(f"{url}: refused: the downloaded file has SHA-256 {got}, not the pinned "
                                  f"{expected}; nothing was kept")
        os.replace(partial, target)
    return target


def resolve_weights(spec: str | os.PathLike) -> Path:
    """The local weights file that ``spec`` names: an http(s) URL (downloaded once into the torch
    hub cache), ``hf://OWNER/NAME[@REVISION]`` (a Hugging Face model repository, through
    huggingface_hub's cache), a folder in that layout (its ``model.safetensors``), or a file path
    (returned as it is, existing or not)."""
    if is_url(spec):
        return download(str(spec))
    from dgcnet.formats import hf

    if isinstance(spec, str) and spec.startswith(hf.HF_SCHEME):
        return hf.hub_weights(spec)
    path = Path(spec)
    if path.is_dir():
        return hf.folder_weights(path)
    return path
