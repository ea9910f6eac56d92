from __future__ import annotations

import pytest

from lora_ext.dataset.names import sanitize_filename, unique_stem, validate_name
from lora_ext.errors import DatasetError


@pytest.mark.parametrize("name", ["猫のキャラ", "キャラ_v2", "Ünïcode ñame", "émoji 🐱", "学習 データ 1"])
def test_names_in_any_script_are_accepted(name: str) -> None:
    assert validate_name(name) == name


def test_names_are_stripped_and_nfc_normalised() -> None:
    assert validate_name("  ガ ") == "ガ"
    assert validate_name("\u30ab\u3099") == "\u30ac"  # カ + combining dakuten, as macOS spells it


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        ".",
        "..",
        "../escape",
        "a/b",
        "a\\b",
        "CON",
        "con",
        "con.txt",
        "Nul.png",
        "COM1",
        "lpt9.jpg",
        "a\x00b",
        "tab\there",
        "line\nbreak",
        "x" * 101,
        "あ" * 70,  # 70 characters but 210 UTF-8 bytes
        "a:b",
        "what?",
        "trailing.",
        ".hidden",
    ],
)
def test_unsafe_names_are_refused_with_a_message(name: str) -> None:
    with pytest.raises(DatasetError) as caught:
        validate_name(name, "project name")
    assert "project name" in caught.value.user_message


def test_a_hundred_characters_is_still_accepted() -> None:
    assert validate_name("x" * 100) == "x" * 100


def test_sanitize_keeps_japanese_and_the_extension() -> None:
    assert sanitize_filename("写真 01.PNG") == "写真 01.PNG"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a/b:c.png", "a_b_c.png"),
        ("con.png", "con_.png"),
        ("bad\x07name.jpg", "bad_name.jpg"),
        ("..png", "image.png"),
        (".png", "image.png"),
        ("trailing dots...", "trailing dots"),
        ("   .jpg", "image.jpg"),
    ],
)
def test_sanitize_turns_unsafe_file_names_into_safe_ones(raw: str, expected: str) -> None:
    assert sanitize_filename(raw) == expected


def test_sanitize_shortens_long_names_but_keeps_the_extension() -> None:
    cleaned = sanitize_filename("長" * 150 + ".png")
    assert cleaned.endswith(".png")
    assert validate_name(cleaned) == cleaned


def test_unique_stem_counts_up_ignoring_case() -> None:
    assert unique_stem("cat", {"dog"}) == "cat"
    assert unique_stem("Cat", {"cat", "cat_2"}) == "Cat_3"
    assert unique_stem("ねこ", {"ねこ"}) == "ねこ_2"
