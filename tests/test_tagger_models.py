"""Model registry and file resolution: local folders first, the HF cache next, downloads last."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import huggingface_hub.constants
import pytest
from onnx_tagger_fixture import build_tiny_tagger

from lora_ext.errors import TaggerUnavailable
from lora_ext.tagger.models import MODELS, find_spec, resolve_model

V3 = (
    "wd-vit-tagger-v3",
    "wd-swinv2-tagger-v3",
    "wd-convnext-tagger-v3",
    "wd-vit-large-tagger-v3",
    "wd-eva02-large-tagger-v3",
)
V2 = ("moat", "swinv2", "convnext", "convnextv2", "vit")


def test_registry_has_every_v2_and_v3_model_pinned_to_a_tagged_revision() -> None:
    names = {spec.name for spec in MODELS}
    assert set(V3) <= names
    assert {f"wd-v1-4-{arch}-tagger-v2" for arch in V2} <= names
    assert len(names) == len(MODELS)
    for spec in MODELS:
        assert spec.repo_id == f"SmilingWolf/{spec.name}"
        assert spec.revision not in ("", "main", "HEAD")
        assert 0 < spec.threshold < 1


def test_registry_lookup_accepts_repo_ids() -> None:
    assert find_spec("SmilingWolf/wd-vit-tagger-v3") is find_spec("wd-vit-tagger-v3")


def _never_called(*args: object, **kwargs: object) -> str:
    raise AssertionError(f"the hub was asked for {args} {kwargs}")


def test_a_user_folder_with_both_files_is_used_as_is(tmp_path: Path) -> None:
    folder = build_tiny_tagger(tmp_path / "my-tagger")
    files = resolve_model(folder, tmp_path / "models", downloader=_never_called)
    assert (files.onnx_path, files.labels_path, files.spec) == (
        folder / "model.onnx",
        folder / "selected_tags.csv",
        None,
    )


def test_a_user_folder_missing_a_file_says_which(tmp_path: Path) -> None:
    folder = build_tiny_tagger(tmp_path / "my-tagger")
    (folder / "selected_tags.csv").unlink()
    with pytest.raises(TaggerUnavailable, match="has no selected_tags.csv"):
        resolve_model(folder, tmp_path / "models", downloader=_never_called)


def test_an_unknown_name_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(TaggerUnavailable) as caught:
        resolve_model("wd-nonexistent", tmp_path, downloader=_never_called)
    assert "wd-eva02-large-tagger-v3" in caught.value.one_line()


def test_files_already_in_the_model_folder_need_no_hub(tmp_path: Path) -> None:
    build_tiny_tagger(tmp_path / "models" / "wd-vit-tagger-v3")
    files = resolve_model("wd-vit-tagger-v3", tmp_path / "models", downloader=_never_called)
    assert files.onnx_path == tmp_path / "models" / "wd-vit-tagger-v3" / "model.onnx"
    assert files.spec is find_spec("wd-vit-tagger-v3")


@pytest.fixture
def hub_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real huggingface_hub, offline, with an empty cache of its own."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_the_shared_hf_cache_is_used_at_the_pinned_revision(tmp_path: Path, hub_offline: Path) -> None:
    spec = find_spec("wd-vit-tagger-v3")
    assert spec is not None
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hub_offline / "models--SmilingWolf--wd-vit-tagger-v3"
    build_tiny_tagger(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / spec.revision).write_text(commit)
    files = resolve_model("wd-vit-tagger-v3", tmp_path / "models")
    assert files.onnx_path == repo / "snapshots" / commit / "model.onnx"


def test_offline_without_files_names_repo_files_and_folder(tmp_path: Path, hub_offline: Path) -> None:
    with pytest.raises(TaggerUnavailable) as caught:
        resolve_model("wd-eva02-large-tagger-v3", tmp_path / "models")
    line = caught.value.one_line()
    assert "SmilingWolf/wd-eva02-large-tagger-v3" in line
    assert "model.onnx" in line and "selected_tags.csv" in line
    assert str(tmp_path / "models" / "wd-eva02-large-tagger-v3") in line
    assert "could not be reached" in line


def test_network_failure_from_hf_hub_download_becomes_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []

    def failing(repo_id: str, filename: str, **kwargs: object) -> str:
        calls.append({"repo_id": repo_id, "filename": filename, **kwargs})
        if kwargs.get("local_files_only"):
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", failing)
    with pytest.raises(TaggerUnavailable) as caught:
        resolve_model("wd-v1-4-moat-tagger-v2", tmp_path / "models", reachable=lambda: True)
    assert "\n" not in caught.value.one_line()
    assert [c.get("local_files_only", False) for c in calls] == [True, False]
    assert all(c["revision"] == "v2.0" for c in calls)
    assert calls[1]["local_dir"] == str(tmp_path / "models" / "wd-v1-4-moat-tagger-v2")


def test_download_goes_into_the_model_folder_at_the_pinned_revision(tmp_path: Path) -> None:
    fetched: list[tuple[str, str]] = []

    def fake_hub(
        repo_id: str, filename: str, *, revision: str, local_files_only: bool = False, local_dir: str = ""
    ) -> str:
        if local_files_only:
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        fetched.append((filename, revision))
        source = build_tiny_tagger(tmp_path / "upstream") / filename
        destination = Path(local_dir) / filename
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(source.read_bytes())
        return str(destination)

    files = resolve_model("wd-swinv2-tagger-v3", tmp_path / "models", downloader=fake_hub)
    assert fetched == [("model.onnx", "v2.0"), ("selected_tags.csv", "v2.0")]
    assert files.labels_path == tmp_path / "models" / "wd-swinv2-tagger-v3" / "selected_tags.csv"


def test_download_can_be_forbidden(tmp_path: Path, hub_offline: Path) -> None:
    with pytest.raises(TaggerUnavailable, match="is not downloaded"):
        resolve_model("wd-vit-tagger-v3", tmp_path / "models", download=False)


def test_a_file_left_by_an_interrupted_download_is_reused_offline(tmp_path: Path, hub_offline: Path) -> None:
    target = build_tiny_tagger(tmp_path / "models" / "wd-vit-tagger-v3")
    (target / "selected_tags.csv").unlink()  # model.onnx arrived, the CSV did not
    with pytest.raises(TaggerUnavailable) as caught:
        resolve_model("wd-vit-tagger-v3", tmp_path / "models")
    assert "cannot download selected_tags.csv" in caught.value.one_line()


def test_unresolvable_hub_fails_at_once_without_trying_to_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bool] = []

    def hub(*_args: object, local_files_only: bool = False, **_kwargs: object) -> str:
        calls.append(local_files_only)
        raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "https://no-such-host.invalid")
    with pytest.raises(TaggerUnavailable, match="could not be reached"):
        resolve_model("wd-vit-tagger-v3", tmp_path / "models")
    assert calls == [True]  # the cache was asked, the network was not


def test_hub_probe_follows_the_configured_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from lora_ext.tagger.models import hub_resolves

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://localhost:8080")
    assert hub_resolves()
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "https://mirror.invalid")
    assert not hub_resolves()


def test_the_preselected_model_is_a_local_one_else_the_small_v3_default(tmp_path: Path) -> None:
    from lora_ext.tagger.models import DEFAULT_MODEL, default_model, model_choices

    assert default_model(tmp_path) == DEFAULT_MODEL
    spec = find_spec(DEFAULT_MODEL)
    assert spec is not None and spec.generation == "v3" and "large" not in spec.name
    (tmp_path / "mine").mkdir()
    for name in ("model.onnx", "selected_tags.csv"):
        (tmp_path / "mine" / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    assert default_model(tmp_path) == "mine"
    assert model_choices(tmp_path)[0] == "mine" and "empty" not in model_choices(tmp_path)
