"""A small HTTP client for a running WebUI (stdlib only): JSON in and out, Basic auth, images as numpy arrays."""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.request

import numpy as np

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy


class HTTPError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:400]}")
        self.status = status
        self.body = body


class WebUIClient:
    def __init__(self, base: str, login: tuple[str, str] | None = None, timeout: float = 3600) -> None:
        self.base = base.rstrip("/")
        self.login = login
        self.timeout = timeout
        self.projects: list[str] = []  # made by ``create_project``: moved to the trash by ``remove_projects``

    def call(self, method: str, path: str, body=None, login: bool = True):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("content-type", "application/json")
        if login and self.login:
            token = base64.b64encode(":".join(self.login).encode()).decode()
            request.add_header("authorization", f"Basic {token}")
        try:
            with DIRECT.open(request, timeout=self.timeout) as response:
                raw = response.read()
                kind = response.headers.get("content-type", "")
                return json.loads(raw) if "json" in kind else raw.decode(errors="replace")
        except urllib.error.HTTPError as error:
            raise HTTPError(error.code, error.read().decode(errors="replace")) from None

    def get(self, path: str, **kwargs):
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body=None, **kwargs):
        return self.call("POST", path, {} if body is None else body, **kwargs)

    def create_project(self, name: str) -> str:
        self.post("/train-tools/v1/projects", {"name": name})
        self.projects.append(name)
        return name

    def remove_projects(self) -> list[str]:
        """Move the projects this client made to the WebUI's trash folder; returns those it could not move."""
        left = [name for name in self.projects if self.status_of("DELETE", f"/train-tools/v1/projects/{name}") != 200]
        self.projects = []
        return left

    def status_of(self, method: str, path: str, body=None, login: bool = True) -> int:
        try:
            self.call(method, path, body, login=login)
            return 200
        except HTTPError as error:
            return error.status

    def wait_until_up(self, timeout: float = 900) -> None:
        """The probe's routes answer only after the WebUI ran ``on_app_started`` (its own API answers earlier)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                self.get("/train-tools-probe/where")
                return
            except (OSError, HTTPError):
                time.sleep(2)
        raise TimeoutError(f"{self.base} did not come up (is the probe extension installed?)")

    def txt2img(self, prompt: str, seed: int = 1, steps: int = 2, size: int = 64) -> tuple[np.ndarray, dict]:
        from PIL import Image

        body = {"prompt": prompt, "seed": seed, "steps": steps, "width": size, "height": size}
        body |= {"sampler_name": "Euler", "cfg_scale": 7, "save_images": False}
        answer = self.post("/sdapi/v1/txt2img", body)
        image = Image.open(io.BytesIO(base64.b64decode(answer["images"][0]))).convert("RGB")
        return np.asarray(image), json.loads(answer["info"])

    def options(self, **values) -> None:
        self.post("/sdapi/v1/options", values)

    def model_hash(self, values_only: bool = False) -> str:
        return self.get(f"/train-tools-probe/model_hash?values_only={int(values_only)}")["sha256"]

    def wait_for_job(self, timeout: float = 3600) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = self.get("/train-tools/v1/jobs/current")
            if not status.get("running"):
                return status
            time.sleep(2)
        raise TimeoutError("the job did not finish")


def max_difference(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())
