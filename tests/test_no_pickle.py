"""Nothing a user can hand us is unpickled: no unpickling call anywhere in the extension's code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# torch.load (even weights_only=True runs an unpickler), pickle and its relatives, np.load (allow_pickle).
UNPICKLING = re.compile(
    r"\btorch\.load\s*\(|\bimport (c?pickle|dill|joblib|cloudpickle|shelve|marshal)\b"
    r"|\bfrom (c?pickle|dill|joblib|cloudpickle|shelve|marshal) import\b|\b(np|numpy)\.load\s*\(|allow_pickle\s*=\s*True"
)


def test_no_module_of_the_extension_can_unpickle():
    sources = [
        *sorted((ROOT / "lora_ext").rglob("*.py")),
        *sorted((ROOT / "scripts").glob("*.py")),
        ROOT / "install.py",
    ]
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sources
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if UNPICKLING.search(line)
    ]
    assert found == []


def test_a_diffusers_folder_with_pickled_weights_is_refused(make_pipeline, tmp_path):
    from lora_ext.errors import ModelLoadError
    from lora_ext.hosts.standalone import load_pipeline

    make_pipeline("sd1").save_pretrained(str(tmp_path / "model"), safe_serialization=False)
    assert list((tmp_path / "model").rglob("*.bin"))
    with pytest.raises(ModelLoadError) as caught:
        load_pipeline(str(tmp_path / "model"))
    assert "\n" not in caught.value.one_line()
