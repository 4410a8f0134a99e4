import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves the server's ``files``, honours ``Range: bytes=N-``, and cuts a response short once
    for each path listed in ``cut`` (after that many bytes)."""

    def do_GET(self):
        server = self.server
        with server.lock:
            server.requests.append((self.path, self.headers.get("Range")))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
        payload = body[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(payload)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        with server.lock:
            cut = server.cut.pop(self.path, None)
        self.wfile.write(payload if cut is None else payload[:cut])
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def file_server():
    """An HTTP server on 127.0.0.1 for download tests: set ``files`` {path: bytes} and ``cut``
    {path: bytes sent before the connection drops, once}; ``requests`` lists (path, Range header)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.files, httpd.cut, httpd.requests, httpd.lock = {}, {}, [], threading.Lock()
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)
