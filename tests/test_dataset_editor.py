from __future__ import annotations

from collections.abc import Callable

import pytest

from lora_ext.dataset.editor import Editor
from lora_ext.dataset.table import CaptionTable, TagFilter
from lora_ext.errors import DatasetError


def _table() -> CaptionTable:
    return CaptionTable.from_captions(
        {
            "a.png": "sks, 1girl, red hair, smile",
            "b.png": "1girl, blue hair, smile, smile",
            "c.png": "1boy, red hair",
            "d.png": "landscape",
            "10_x/e.png": "1girl, red hair, hat",
        }
    )


def _captions(editor: Editor) -> dict[str, tuple[str, ...]]:
    return editor.table.as_dict()


OPERATIONS: dict[str, Callable[[Editor], object]] = {
    "add append": lambda e: e.add_tags("new, tag"),
    "add prepend": lambda e: e.add_tags(["first"], "prepend"),
    "remove": lambda e: e.remove_tags(["smile", "1girl"]),
    "rename": lambda e: e.rename_tag("red hair", "crimson hair"),
    "replace each": lambda e: e.replace("hair", "locks"),
    "replace regex": lambda e: e.replace(r"^(\w+) hair$", r"\1-haired", regex=True),
    "replace selected": lambda e: e.replace("hair", "HAIR", scope="selected", selected=["red hair"]),
    "replace caption": lambda e: e.replace(", smile", "", scope="caption"),
    "dedupe": lambda e: e.dedupe(),
    "sort alphabetical": lambda e: e.sort("alphabetical"),
    "sort frequency": lambda e: e.sort("frequency"),
    "sort length": lambda e: e.sort("length", reverse=True),
    "trigger first": lambda e: e.trigger_first("sks"),
    "truncate": lambda e: e.truncate_tokens(2, lambda text: len(text.split())),
    "set caption": lambda e: e.set_caption("d.png", "mountain, lake"),
}


@pytest.mark.parametrize("name", OPERATIONS)
def test_every_operation_changes_captions_and_undo_redo_restore_them(name: str) -> None:
    editor = Editor(_table())
    before = editor.table
    result = OPERATIONS[name](editor)
    after = editor.table
    assert result.changed > 0
    assert after.as_dict() != before.as_dict()
    assert editor.undo() is not None
    assert editor.table is before
    assert editor.redo() is not None
    assert editor.table is after


def test_operations_never_modify_the_previous_snapshot() -> None:
    editor = Editor(_table())
    snapshot = editor.table
    frozen = snapshot.as_dict()
    for operation in OPERATIONS.values():
        operation(editor)
    assert snapshot.as_dict() == frozen


def test_batch_edits_produce_the_expected_captions() -> None:
    editor = Editor(_table())
    editor.add_tags("sks", "prepend")
    assert _captions(editor)["b.png"] == ("sks", "1girl", "blue hair", "smile", "smile")
    assert _captions(editor)["a.png"] == ("sks", "1girl", "red hair", "smile")
    editor.dedupe()
    assert _captions(editor)["b.png"] == ("sks", "1girl", "blue hair", "smile")
    editor.sort("frequency")
    # sks is in all 5, 1girl in 3, red hair in 3, smile in 2 — ties alphabetical.
    assert _captions(editor)["a.png"] == ("sks", "1girl", "red hair", "smile")
    editor.replace("red hair", "", scope="each")
    assert _captions(editor)["c.png"] == ("sks", "1boy")


def test_batch_edits_apply_only_to_the_filtered_rows() -> None:
    editor = Editor(_table())
    shown = editor.set_filter(TagFilter(positive=frozenset({"red hair"})))
    assert shown == ("10_x/e.png", "a.png", "c.png")
    result = editor.add_tags("redhead")
    assert result.changed == 3
    tagged = {key for key, tags in _captions(editor).items() if "redhead" in tags}
    assert tagged == {"10_x/e.png", "a.png", "c.png"}


def test_per_image_edit_ignores_the_filter() -> None:
    editor = Editor(_table())
    editor.set_filter(TagFilter(positive=frozenset({"landscape"})))
    editor.set_caption("a.png", ["only"])
    assert _captions(editor)["a.png"] == ("only",)


@pytest.mark.parametrize(
    ("tag_filter", "expected"),
    [
        (TagFilter(positive=frozenset({"1girl", "red hair"}), positive_logic="AND"), {"a.png", "10_x/e.png"}),
        (TagFilter(positive=frozenset({"1boy", "landscape"}), positive_logic="OR"), {"c.png", "d.png"}),
        (TagFilter(positive=frozenset({"1girl", "1boy"}), positive_logic="NONE"), {"d.png"}),
        (TagFilter(negative=frozenset({"smile", "hat"}), negative_logic="OR"), {"c.png", "d.png"}),
        (TagFilter(negative=frozenset({"1girl", "hat"}), negative_logic="AND"), {"a.png", "b.png", "c.png", "d.png"}),
        (TagFilter(negative=frozenset({"1girl"}), negative_logic="NONE"), {"a.png", "b.png", "10_x/e.png"}),
        (
            TagFilter(positive=frozenset({"1girl"}), negative=frozenset({"smile"})),
            {"10_x/e.png"},
        ),
        (TagFilter(keys=frozenset({"a.png", "d.png"}), positive=frozenset({"smile"})), {"a.png"}),
        (TagFilter(), {"a.png", "b.png", "c.png", "d.png", "10_x/e.png"}),
    ],
)
def test_filters_show_the_expected_rows(tag_filter: TagFilter, expected: set[str]) -> None:
    editor = Editor(_table())
    assert set(editor.set_filter(tag_filter)) == expected


def test_unknown_filter_logic_is_refused() -> None:
    with pytest.raises(DatasetError):
        TagFilter(positive=frozenset({"a"}), positive_logic="XOR")  # type: ignore[arg-type]


def test_tag_counts_follow_the_filter() -> None:
    editor = Editor(_table())
    assert editor.tag_counts()["red hair"] == 3
    assert editor.tag_counts()["smile"] == 2  # b.png has smile twice but counts once
    editor.set_filter(TagFilter(positive=frozenset({"smile"})))
    counts = editor.tag_counts()
    assert counts["red hair"] == 1 and counts["1girl"] == 2 and "1boy" not in counts
    assert editor.tag_counts(visible_only=False)["1boy"] == 1
    assert editor.common_tags() == ("1girl", "smile")


def test_replace_in_selected_tags_defaults_to_the_positive_filter() -> None:
    editor = Editor(_table())
    editor.set_filter(TagFilter(positive=frozenset({"blue hair"})))
    editor.replace("hair", "wig", scope="selected")
    assert _captions(editor)["b.png"] == ("1girl", "blue wig", "smile", "smile")
    editor.set_filter(TagFilter())
    with pytest.raises(DatasetError, match="No tags are selected"):
        editor.replace("hair", "wig", scope="selected")


def test_an_edit_that_changes_nothing_is_not_recorded() -> None:
    editor = Editor(_table())
    result = editor.remove_tags("no such tag")
    assert result.changed == 0
    assert not editor.can_undo


def test_a_new_edit_clears_redo() -> None:
    editor = Editor(_table())
    editor.add_tags("x")
    editor.undo()
    assert editor.can_redo
    editor.add_tags("y")
    assert not editor.can_redo
    assert editor.redo() is None


def test_undo_with_nothing_to_undo_returns_none() -> None:
    assert Editor(_table()).undo() is None


def test_history_is_limited() -> None:
    editor = Editor(_table(), history_limit=3)
    for number in range(5):
        editor.add_tags(f"t{number}")
    assert editor.history() == ("add t2", "add t3", "add t4")


def test_failed_regex_leaves_the_table_unchanged() -> None:
    editor = Editor(_table())
    before = editor.table
    with pytest.raises(DatasetError):
        editor.replace("hair", r"\3", regex=True)
    assert editor.table is before and not editor.can_undo


def test_truncate_without_a_tokenizer_explains_why() -> None:
    with pytest.raises(DatasetError, match="tokenizer"):
        Editor(_table()).truncate_tokens(75, None)


def test_dirty_tracking_follows_save_and_undo() -> None:
    editor = Editor(_table())
    assert not editor.is_dirty
    editor.add_tags("x")
    assert editor.is_dirty and len(editor.unsaved_keys()) == 5
    editor.mark_saved()
    assert not editor.is_dirty
    editor.undo()
    assert editor.is_dirty


def test_cached_tag_sets_follow_edits() -> None:
    table = _table()
    assert table.tag_sets[table.index_of("d.png")] == {"landscape"}  # cache filled before the edit
    edited = table.with_rows({table.index_of("d.png"): ("sea",)})
    assert edited.tag_sets[edited.index_of("d.png")] == {"sea"}
    assert TagFilter(positive=frozenset({"sea"})).indices(edited) == (edited.index_of("d.png"),)
    assert table.tag_sets[table.index_of("d.png")] == {"landscape"}
