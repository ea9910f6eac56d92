"""Caption merging and writing: modes, de-duplication, backups, atomic writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_ext.errors import FileFormatError
from lora_ext.tagger.captions import backup_path, merge_caption, read_caption, save_caption


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("skip", None),
        ("overwrite", "smile, long hair"),
        ("append", "1girl, Long_Hair, solo, smile"),
        ("prepend", "smile, long hair, 1girl, solo"),
    ],
)
def test_existing_caption_modes(mode: str, expected: str | None) -> None:
    assert merge_caption("1girl, Long_Hair,\nsolo", ["smile", "long hair"], mode) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("existing", [None, "", "  \n"])
@pytest.mark.parametrize("mode", ["skip", "overwrite", "append", "prepend"])
def test_missing_or_blank_caption_gets_the_new_tags_in_every_mode(existing: str | None, mode: str) -> None:
    assert merge_caption(existing, ["smile", "smile", "solo"], mode) == "smile, solo"  # type: ignore[arg-type]


def test_separator_is_comma_space_and_text_is_utf8(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    save_caption(path, merge_caption(None, ["ø", "^_^"], "overwrite") or "", None)
    assert path.read_bytes() == "ø, ^_^".encode()


def test_replacing_a_caption_keeps_numbered_backups(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("hand written")
    assert save_caption(path, "first", read_caption(path))
    assert save_caption(path, "second", read_caption(path))
    assert path.read_text() == "second"
    assert (tmp_path / "a.txt.000.bak").read_text() == "hand written"
    assert (tmp_path / "a.txt.001.bak").read_text() == "first"
    assert backup_path(path).name == "a.txt.002.bak"


def test_unchanged_caption_is_not_rewritten_or_backed_up(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("smile")
    assert not save_caption(path, "smile", read_caption(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_backups_can_be_turned_off(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("old")
    save_caption(path, "new", "old", backup=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_empty_caption_needs_no_backup(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("")
    save_caption(path, "new", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_caption_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"caf\xe9")
    with pytest.raises(FileFormatError, match="not UTF-8"):
        read_caption(path)


def test_byte_order_mark_is_not_part_of_the_first_tag(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeffsolo, smile".encode())
    assert merge_caption(read_caption(path), ["solo"], "append") == "solo, smile"


def test_failed_write_leaves_the_old_caption_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.txt"
    path.write_text("old caption")

    def broken_replace(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("lora_ext.fileio.os.replace", broken_replace)
    with pytest.raises(OSError):
        save_caption(path, "new caption", "old caption", backup=False)
    assert path.read_text() == "old caption"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


@pytest.mark.parametrize("bad", [{"existing": "merge"}, {"extension": "txt"}])
def test_impossible_write_options_are_refused(bad: dict[str, str]) -> None:
    from lora_ext.errors import ConfigError
    from lora_ext.tagger import WriteOptions

    with pytest.raises(ConfigError):
        WriteOptions(**bad)  # type: ignore[arg-type]
