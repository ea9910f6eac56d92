"""Where the standalone app keeps its data (the A1111 host uses the WebUI's folders), and
how a path is kept inside its folder.

``TRAIN_TOOLS_HOME`` overrides the default ``~/.train-tools``; tests point it at a
temp folder.

``resolve_inside`` is the one check every path a user or a file supplies goes
through before we read or write it: a relative path without ``..`` whose real
location, links resolved, is still inside the folder. The folder itself is
trusted (it may be a link, say to a dataset kept on another disk); a link
*inside* it that points elsewhere is never followed.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath

from lora_ext.errors import UnsafePath, shown


def data_dir() -> Path:
    """The standalone data folder: projects, Lora output, tagger models, caches."""
    root = os.environ.get("TRAIN_TOOLS_HOME")
    return Path(root).expanduser() if root else Path.home() / ".train-tools"


def scratch_dir(name: str) -> Path:
    """A cache folder that may be deleted at any time; created on demand."""
    folder = data_dir() / "cache" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def lora_dir() -> Path:
    return data_dir() / "models" / "Lora"


def projects_dir() -> Path:
    return data_dir() / "projects"


def tagger_models_dir() -> Path:
    return data_dir() / "models" / "wd14_tagger"


def demo_model_dir(model: str = "demo") -> Path:
    """Where the demo model ``model`` (``demo``, ``demo-vpred``) is built."""
    return data_dir() / "models" / ("demo-sd1" if model == "demo" else f"{model}-sdxl")


def _within(path: str, folder: str) -> bool:
    path, folder = os.path.normcase(path), os.path.normcase(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def resolve_inside(root: str | os.PathLike[str], relative: str | os.PathLike[str], what: str = "its folder") -> Path:
    """``root / relative``, or ``UnsafePath`` when that would lead out of ``root``.

    Refused: an absolute path or a drive, a ``..`` part, and a path whose real
    location (every link along it resolved, a dangling one included) is outside
    ``root``'s. Nothing is created; a path that does not exist yet is fine. The
    returned path is the plain join, not the resolved one, so a rename over it
    replaces the entry in ``root`` rather than a file a link points to.
    """
    base = Path(root)
    pure = PurePath(relative)
    quoted = shown(str(relative))
    if pure.is_absolute() or pure.anchor or ".." in pure.parts:
        raise UnsafePath(f"{quoted} would escape {what}.")
    candidate = base.joinpath(*pure.parts)
    if not _within(os.path.realpath(candidate), os.path.realpath(base)):
        raise UnsafePath(
            f"{quoted} is a link (or inside a linked folder) that points outside {what}; links are not followed.",
            hint="replace the link with a real file or folder",
        )
    return candidate


def is_inside(root: str | os.PathLike[str], relative: str | os.PathLike[str]) -> bool:
    """True when ``resolve_inside(root, relative)`` accepts the path."""
    try:
        resolve_inside(root, relative)
    except UnsafePath:
        return False
    return True
