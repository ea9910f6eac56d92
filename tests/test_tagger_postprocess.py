"""Post-processing: categories by CSV column, strict thresholds, MCut, names, filters, order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx_tagger_fixture import LABEL_ROWS, write_selected_tags

from lora_ext.dataset.captions import escape_for_prompt, parse_tags
from lora_ext.errors import ConfigError, TaggerUnavailable
from lora_ext.tagger.labels import Labels, read_labels
from lora_ext.tagger.postprocess import (
    KAOMOJI,
    TagOptions,
    caption_tags,
    display_name,
    mcut_threshold,
    score_tags,
)


def make_labels(*rows: tuple[str, str]) -> Labels:
    return Labels(tuple(name for name, _ in rows), tuple(category for _, category in rows))  # type: ignore[arg-type]


LABELS = make_labels(
    ("general", "rating"),
    ("long_hair", "general"),
    ("hatsune_miku", "character"),
    ("sensitive", "rating"),
    ("smile", "general"),
    ("^_^", "general"),
    ("kirisame_marisa", "character"),
    ("hair_ribbon_(object)", "general"),
    ("questionable", "rating"),
)


def probs(**by_name: float) -> np.ndarray:
    return np.array([by_name.get(name, 0.0) for name in LABELS.names], dtype=np.float32)


def tags_of(probabilities: np.ndarray, **options: object) -> list[str]:
    chosen = TagOptions(**options)  # type: ignore[arg-type]
    return caption_tags(score_tags(probabilities, LABELS, chosen), chosen)


def test_csv_categories_decide_the_split_not_row_order(tmp_path: Path) -> None:
    labels = read_labels(write_selected_tags(tmp_path / "selected_tags.csv"))
    expected = {"rating": [], "general": [], "character": []}
    for name, code, *_ in LABEL_ROWS:
        if code in (9, 0, 4):
            expected[{9: "rating", 0: "general", 4: "character"}[code]].append(name)
    for category, names in expected.items():
        assert [labels.names[i] for i in np.flatnonzero(labels.mask(category))] == names  # type: ignore[arg-type]


def test_categories_the_tagger_does_not_use_never_become_tags(tmp_path: Path) -> None:
    labels = read_labels(write_selected_tags(tmp_path / "selected_tags.csv"))
    everything = np.ones(len(labels), dtype=np.float32)
    scores = score_tags(everything * 0.99, labels, TagOptions())
    assert "some artist" not in [t.tag for t in scores.tags + scores.ratings]


def test_csv_without_name_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "selected_tags.csv"
    path.write_text("tag_id,label,count\n1,a,2\n")
    with pytest.raises(TaggerUnavailable, match="not a WD tag list"):
        read_labels(path)


def test_thresholds_are_strict_and_per_category() -> None:
    at_threshold = tags_of(probs(long_hair=0.35, smile=0.3501, hatsune_miku=0.85, kirisame_marisa=0.8501))
    assert at_threshold == ["kirisame marisa", "smile"]


def test_character_threshold_is_separate_from_general() -> None:
    scores = probs(long_hair=0.6, hatsune_miku=0.65)
    assert tags_of(scores) == ["long hair"]
    assert tags_of(scores, character_threshold=0.5) == ["hatsune miku", "long hair"]
    assert tags_of(scores, general_threshold=0.7, character_threshold=0.5) == ["hatsune miku"]


def test_outputs_are_used_as_probabilities_without_a_second_sigmoid() -> None:
    # A second sigmoid would turn 0.2 into 0.55 and select it.
    assert tags_of(probs(smile=0.2)) == []


def test_mcut_threshold_is_the_midpoint_of_the_largest_gap() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        scores = rng.random(12)
        cut = mcut_threshold(scores)
        kept, dropped = scores[scores > cut], scores[scores <= cut]
        ordered = np.sort(scores)
        assert kept.min() - dropped.max() == pytest.approx(np.max(np.diff(ordered)))
        assert cut == pytest.approx((kept.min() + dropped.max()) / 2)


def test_mcut_replaces_the_fixed_general_threshold() -> None:
    scores = probs(long_hair=0.30, smile=0.28, **{"^_^": 0.05})
    assert tags_of(scores) == []
    assert tags_of(scores, general_mcut=True) == ["long hair", "smile"]


def test_character_mcut_has_a_floor_of_0_15() -> None:
    scores = probs(hatsune_miku=0.12, kirisame_marisa=0.01)
    assert tags_of(scores, character_mcut=True) == []  # the MCut cut alone would be 0.065
    assert tags_of(probs(hatsune_miku=0.40, kirisame_marisa=0.01), character_mcut=True) == ["hatsune miku"]


def test_underscores_become_spaces_except_in_kaomoji() -> None:
    assert len(KAOMOJI) == 19
    assert tags_of(probs(long_hair=0.9, **{"^_^": 0.8})) == ["long hair", "^_^"]
    assert tags_of(probs(long_hair=0.9), replace_underscores=False) == ["long_hair"]
    assert all(display_name(face) == face for face in KAOMOJI)


def test_parentheses_are_not_escaped_in_captions() -> None:
    assert tags_of(probs(**{"hair_ribbon_(object)": 0.9})) == ["hair ribbon (object)"]
    assert escape_for_prompt("hair ribbon (object)") == "hair ribbon \\(object\\)"


@pytest.mark.parametrize("spelling", ["long_hair", "long hair", "Long Hair", " long_hair "])
def test_exclude_matches_raw_and_spaced_names(spelling: str) -> None:
    assert tags_of(probs(long_hair=0.9, smile=0.8), exclude=(spelling,)) == ["smile"]


def test_always_first_tags_lead_and_are_not_repeated() -> None:
    result = tags_of(probs(long_hair=0.9, smile=0.8), always_first=("my_trigger", "smile"))
    assert result == ["my_trigger", "smile", "long hair"]


def test_tags_are_sorted_by_confidence_with_optional_characters_first() -> None:
    scores = probs(long_hair=0.95, smile=0.5, hatsune_miku=0.9)
    assert tags_of(scores) == ["long hair", "hatsune miku", "smile"]
    assert tags_of(scores, characters_first=True) == ["hatsune miku", "long hair", "smile"]


def test_equal_confidences_keep_csv_order() -> None:
    assert tags_of(probs(smile=0.9, long_hair=0.9, hatsune_miku=0.9)) == ["long hair", "hatsune miku", "smile"]


def test_max_tags_keeps_the_most_confident_model_tags_but_not_fewer_trigger_words() -> None:
    scores = probs(long_hair=0.95, smile=0.5, hatsune_miku=0.9, **{"^_^": 0.6})
    assert tags_of(scores, max_tags=2) == ["long hair", "hatsune miku"]
    assert tags_of(scores, max_tags=1, always_first=("trigger",)) == ["trigger", "long hair"]


@pytest.mark.parametrize(
    ("placement", "expected"), [("off", ["smile"]), ("first", ["sensitive", "smile"]), ("last", ["smile", "sensitive"])]
)
def test_rating_tag_is_the_most_likely_rating_where_asked(placement: str, expected: list[str]) -> None:
    scores = probs(general=0.3, sensitive=0.6, questionable=0.1, smile=0.9)
    assert tags_of(scores, rating=placement) == expected


def test_ratings_are_all_reported_best_first() -> None:
    scores = score_tags(probs(general=0.3, sensitive=0.6, questionable=0.1), LABELS, TagOptions())
    assert [(t.tag, t.category) for t in scores.ratings] == [
        ("sensitive", "rating"),
        ("general", "rating"),
        ("questionable", "rating"),
    ]
    assert scores.ratings[0].confidence == pytest.approx(0.6)


def test_scoring_leaves_the_probabilities_untouched() -> None:
    scores = probs(long_hair=0.9, smile=0.5)
    before = scores.copy()
    tags_of(scores, general_mcut=True, max_tags=1)
    np.testing.assert_array_equal(scores, before)


@pytest.mark.parametrize(
    "options",
    [{"general_threshold": 1.5}, {"character_threshold": -0.1}, {"max_tags": 0}, {"rating": "middle"}],
)
def test_impossible_options_are_refused_with_a_sentence(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        TagOptions(**options)  # type: ignore[arg-type]


def test_tag_lists_split_on_commas() -> None:
    assert parse_tags(["a, b ,c", "d,,"]) == ("a", "b", "c", "d")
    assert parse_tags(None) == ()


def test_exclude_removes_a_kaomoji_given_as_written() -> None:
    assert tags_of(probs(smile=0.8, **{"^_^": 0.9}), exclude=("^_^",)) == ["smile"]
