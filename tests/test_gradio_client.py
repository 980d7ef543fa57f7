"""The WebUI as `gradio_client` (the official client users script it with) sees it: its
endpoints' parameters carry the CLI's and REST's names, and a fusion through it works."""

from __future__ import annotations

import threading
import time

import pytest

gradio_client = pytest.importorskip("gradio_client")
uvicorn = pytest.importorskip("uvicorn")
pytestmark = pytest.mark.slow  # a real server: stopping it alone waits up to 10 s

from facefuse.config import Settings  # noqa: E402
from facefuse.server import bind_socket, create_app  # noqa: E402
from facefuse.service import FusionPool  # noqa: E402


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = Settings(output={"dir": str(tmp_path_factory.mktemp("out"))}, server={"workers": 1})
    pool = FusionPool(settings)
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(settings, pool=pool), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline
        time.sleep(0.05)
    yield gradio_client.Client(f"http://127.0.0.1:{sock.getsockname()[1]}/", verbose=False)
    server.should_exit = True
    thread.join(10)
    pool.shutdown()


def _params(client, endpoint: str) -> list[str]:
    return [p["parameter_name"] for p in client.view_api(return_format="dict", print_info=False)
            ["named_endpoints"][endpoint]["parameters"]]


def test_endpoints_use_the_cli_names(client):
    assert _params(client, "/fuse") == ["source", "target", "ratio", "mode", "smoothing", "brightness", "contrast",
                                        "saturation", "resolution", "threshold", "padding", "face_index", "format",
                                        "source_face_index"]
    assert _params(client, "/source_faces") == ["source", "threshold"]
    assert _params(client, "/target_faces") == ["target", "threshold", "face_index"]
    assert set(client.view_api(return_format="dict", print_info=False)["named_endpoints"]) == {
        "/fuse", "/source_faces", "/target_faces", "/gallery"}


def test_fuse_through_gradio_client(client, source_path, target_path):
    from gradio_client import handle_file

    path, _compare, _download, info, _gallery = client.predict(
        source=handle_file(str(source_path)), target=handle_file(str(target_path)), ratio=0.7, mode="blend",
        resolution="512", face_index=["0"], format="png", api_name="/fuse")
    assert "Done in" in info and "512 × 341" in info and str(path).endswith(".png")
