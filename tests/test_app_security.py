"""The standalone app with ``--api-auth``: no route answers without credentials, the file route serves only
gradio's cache, and the REST API refuses bodies over 1 MiB. Black-box, against the real server process."""

from __future__ import annotations

import base64
import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from ui_fixtures import write_images
from webui import REPO

USER, PASSWORD = "alice", "s3cret"
BASIC = (USER, PASSWORD)
API = "/train-tools/v1"
GRADIO_MAJOR = int(importlib.metadata.version("gradio").split(".")[0])  # the server runs this same venv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="train-tools-auth-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "TRAIN_TOOLS_HOME": str(home / "data"), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "lora_ext", "ui", "--port", str(port), "--device", "cpu"]
    log = open(home / "server.log", "w", encoding="utf-8")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [*command, "--api-auth", f"{USER}:{PASSWORD}"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while time.time() < deadline and process.poll() is None:
            try:
                if requests.get(f"{url}{API}/host", auth=BASIC, timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(1)
        else:
            pytest.fail("server did not start: " + (home / "server.log").read_text(encoding="utf-8")[-3000:])
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def session(server: str) -> requests.Session:
    """A browser that logged in through gradio's login form."""
    browser = requests.Session()
    browser.login = browser.post(f"{server}/login", data={"username": USER, "password": PASSWORD}, timeout=10)
    return browser


@pytest.fixture(scope="module")
def original(server: str, home: Path) -> Path:
    """An image ingested into a project: one of the data folder's originals."""
    write_images(home / "incoming")
    assert requests.post(f"{server}{API}/projects", json={"name": "cats"}, auth=BASIC, timeout=10).ok
    body = {"paths": [str(home / "incoming" / "red.png")]}
    answer = requests.post(f"{server}{API}/projects/cats/versions/v1/ingest", json=body, auth=BASIC, timeout=30)
    assert answer.ok, answer.text
    stored = [path for path in (home / "data").rglob("red.png") if "incoming" not in path.parts]
    assert stored, "the ingested image is not in the data folder"
    return stored[0]


def _page_config(html: str) -> dict:
    """The config gradio embeds in the page (the login form's when not logged in)."""
    return json.loads(html.split("window.gradio_config = ", 1)[1].split(";</script>", 1)[0])


def _language_event(config: dict) -> int:
    """The fn_index of the language switch (a real handler of the page)."""
    radio = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "train_tools_language")
    return next(i for i, dep in enumerate(config["dependencies"]) if radio in _target_ids(dep) and dep["backend_fn"])


def _target_ids(dependency: dict) -> list[int]:
    """An event's components: ids in gradio 3, ``[id, event]`` pairs in gradio 4."""
    return [target[0] if isinstance(target, list) else target for target in dependency["targets"]]


def _predict(language_fn: int) -> dict:
    return {"fn_index": language_fn, "data": ["日本語"], "session_hash": "tt-test"}


def _session_cookie(session: requests.Session) -> str:
    """The "unsecure" login cookie as a Cookie header (gradio 4 suffixes its name with the app's cookie id)."""
    (name,) = [cookie.name for cookie in session.cookies if cookie.name.startswith("access-token-unsecure")]
    return f"{name}={session.cookies[name]}"


def _forged_cookies(session: requests.Session) -> list[str | None]:
    """No cookie, or made-up values under the real cookie names (gradio 3.41.2 alone lets any value in)."""
    suffix = _session_cookie(session).split("=", 1)[0].removeprefix("access-token-unsecure")
    return [None, f"access-token{suffix}=forged", f"access-token-unsecure{suffix}=forged"]


def _open_queue(server: str, cookie: str | None):
    import websocket

    return websocket.create_connection(server.replace("http", "ws") + "/queue/join", cookie=cookie, timeout=20)


def _queue_refused(server: str, cookie: str | None, fn: int) -> None:
    """gradio 3's queue is a websocket (refused at the handshake); gradio 4's is ``/queue/join`` + ``/queue/data``."""
    headers = {"Cookie": cookie} if cookie else {}
    if GRADIO_MAJOR >= 4:
        for answer in (
            requests.post(f"{server}/queue/join", json=_predict(fn), headers=headers, timeout=10),
            requests.get(f"{server}/queue/data", params={"session_hash": "tt-test"}, headers=headers, timeout=10),
        ):
            assert answer.status_code == 401, (cookie, answer.request.url, answer.status_code)
        return
    import websocket

    with pytest.raises(websocket.WebSocketBadStatusException) as refusal:
        _open_queue(server, cookie)
    assert refusal.value.status_code == 403, cookie


def _queue_event(server: str, cookie: str, fn: int) -> dict:
    """Run the language switch through the queue as the page does; the last message (``process_completed``)."""
    if GRADIO_MAJOR >= 4:
        headers = {"Cookie": cookie}
        body = {**_predict(fn), "session_hash": "tt-queue", "event_data": None}
        joined = requests.post(f"{server}/queue/join", json=body, headers=headers, timeout=30)
        assert joined.status_code == 200 and joined.json()["event_id"], joined.text[:300]
        params = {"session_hash": "tt-queue"}
        with requests.get(f"{server}/queue/data", params=params, headers=headers, stream=True, timeout=60) as events:
            assert events.status_code == 200, events.status_code
            for line in events.iter_lines(decode_unicode=True):
                if line.startswith("data:"):
                    message = json.loads(line[len("data:") :])
                    if message["msg"] == "process_completed":
                        return message
        raise AssertionError("the queue closed before the event completed")
    queue = _open_queue(server, cookie)
    try:
        assert json.loads(queue.recv())["msg"] == "send_hash"
        queue.send(json.dumps({"fn_index": fn, "session_hash": "tt-queue"}))
        message = json.loads(queue.recv())
        while message["msg"] != "send_data":
            message = json.loads(queue.recv())
        queue.send(json.dumps({**_predict(fn), "session_hash": "tt-queue", "event_data": None}))
        while message["msg"] != "process_completed":
            message = json.loads(queue.recv())
        return message
    finally:
        queue.close()


def test_without_credentials_only_the_login_page_answers(server: str, session: requests.Session, original: Path):
    page = requests.get(server + "/", timeout=10)
    assert page.status_code == 200 and _page_config(page.text) == {**_page_config(page.text), "auth_required": True}
    assert "components" not in _page_config(page.text)
    # The login form itself loads (its script and the theme), so a browser can sign in.
    script = page.text.split('src="./assets/', 1)[1].split('"', 1)[0]
    assert requests.get(f"{server}/assets/{script}", timeout=10).status_code == 200
    assert requests.get(f"{server}/theme.css", timeout=10).status_code == 200

    fn = _language_event(session.get(f"{server}/config", timeout=10).json())
    refused = [
        ("get", "/config", {}),
        ("get", "/info", {}),
        ("post", "/api/predict", {"json": _predict(fn)}),
        ("post", "/api/predict/", {"json": _predict(fn)}),
        ("post", "/run/predict", {"json": _predict(fn)}),
        ("post", "/reset", {"json": {"session_hash": "tt-test", "fn_index": fn}}),
        ("get", "/queue/status", {}),
        ("post", "/upload", {"files": {"files": ("a.txt", b"hello")}}),
        ("get", "/file=README.md", {}),
        ("get", f"/file={original}", {}),
        ("get", "/user", {}),
        ("get", "/token", {}),
        # gradio 4's routes (the gate answers before routing, so on gradio 3 they are refused too).
        ("post", "/queue/join", {"json": _predict(fn)}),
        ("get", "/queue/data?session_hash=tt-test", {}),
        ("post", "/call/lambda", {"json": {"data": ["日本語"]}}),
        ("get", "/heartbeat/tt-test", {}),
        ("get", "/upload_progress?upload_id=x", {}),
        ("get", "/stream/tt-test/0/1", {}),
        ("post", "/component_server", {"json": {}}),
        ("post", "/cancel", {"json": {}}),
        ("get", "/login_check", {}),
        ("get", "/app_id", {}),
        ("get", "/monitoring", {}),
        ("get", "/proxy=http://example.com/x", {}),
        ("get", "/file/README.md", {}),
        ("get", f"{API}/host", {}),
        ("get", f"{API}/projects", {}),
        ("post", f"{API}/projects", {"json": {"name": "intruder"}}),
        ("delete", f"{API}/projects/cats", {}),
        ("get", "/openapi.json", {}),
        ("get", "/docs", {}),
        ("get", "/redoc", {}),
    ]
    for method, path, kwargs in refused:
        answer = getattr(requests, method)(server + path, timeout=10, **kwargs)
        assert answer.status_code == 401, (method, path, answer.status_code, answer.text[:200])
    # The REST API still challenges with HTTP Basic; wrong credentials are refused too.
    assert requests.get(f"{server}{API}/projects", timeout=10).headers["WWW-Authenticate"] == "Basic"
    assert requests.get(f"{server}{API}/projects", auth=(USER, "wrong"), timeout=10).status_code == 401
    # The queue: no cookie, or a made-up one (gradio 3.41.2 alone lets any cookie value in), is refused.
    for cookie in _forged_cookies(session):
        _queue_refused(server, cookie, fn)
    assert "intruder" not in requests.get(f"{server}{API}/projects", auth=BASIC, timeout=10).text


def test_with_credentials_the_page_queue_upload_and_api_work(server: str, session: requests.Session):
    assert session.login.status_code == 200 and _session_cookie(session), session.login.text
    page = session.get(server + "/", timeout=10)
    assert page.status_code == 200 and "auth_required" not in _page_config(page.text)
    assert "train_tools" in json.dumps(_page_config(page.text)["components"])
    config = session.get(f"{server}/config", timeout=10)
    assert config.status_code == 200
    fn = _language_event(config.json())
    assert session.get(f"{server}/info", timeout=10).status_code == 200
    assert session.get(f"{server}/queue/status", timeout=10).status_code == 200
    direct = session.post(f"{server}/api/predict", json=_predict(fn), timeout=30)
    assert direct.status_code == 200 and "data" in direct.json(), direct.text[:300]
    # An event through the queue: its internal call to /api/predict carries the same session.
    message = _queue_event(server, _session_cookie(session), fn)
    assert message["success"], message
    # Upload, then read the upload back: the file route serves gradio's own cache.
    uploaded = session.post(f"{server}/upload", files={"files": ("note.txt", b"hello there")}, timeout=10)
    assert uploaded.status_code == 200, uploaded.text
    back = session.get(f"{server}/file={uploaded.json()[0]}", timeout=10)
    assert back.status_code == 200 and back.content == b"hello there"
    # The REST API takes HTTP Basic (as the WebUI's --api-auth); the login cookie alone is not enough.
    assert requests.get(f"{server}{API}/projects", auth=BASIC, timeout=10).status_code == 200
    assert session.get(f"{server}{API}/projects", timeout=10).status_code == 401
    assert requests.get(f"{server}/openapi.json", auth=BASIC, timeout=10).json()["paths"]
    assert session.get(f"{server}/openapi.json", timeout=10).status_code == 200


def test_the_file_route_serves_nothing_outside_gradios_cache(server: str, session: requests.Session, original: Path):
    """Not the working folder (gradio 3's default), not the data folder's originals, not the machine."""
    assert original.is_file() and (REPO / "README.md").is_file()
    for target in ("README.md", REPO / "README.md", original, original.parent, "/etc/passwd", "http://example.com/x"):
        answer = session.get(f"{server}/file={target}", timeout=10)
        assert answer.status_code == 403, (target, answer.status_code)
    cache = Path(session.post(f"{server}/upload", files={"files": ("n.txt", b"x")}, timeout=10).json()[0]).parent
    for escape in (f"{cache}/../../../../etc/passwd", f"{cache}/%2e%2e/%2e%2e/{original}"):
        assert session.get(f"{server}/file={escape}", timeout=10).status_code in (403, 404), escape


def test_rest_bodies_over_one_mib_get_413(server: str):
    big = json.dumps({"name": "x" * (2 * 1024 * 1024)}).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    declared = requests.post(f"{server}{API}/projects", data=big, headers=headers, auth=BASIC, timeout=30)
    assert declared.status_code == 413, declared.text[:200]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    streamed = requests.post(f"{server}{API}/projects", data=chunks(), headers=headers, auth=BASIC, timeout=30)
    assert streamed.status_code == 413, streamed.text[:200]
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    small = requests.post(
        f"{server}{API}/projects", json={"name": "small"}, headers={"Authorization": f"Basic {token}"}, timeout=10
    )
    assert small.status_code == 200, small.text
