from __future__ import annotations

import pytest

from lora_ext.dataset import captions as c
from lora_ext.errors import DatasetError


def test_parse_splits_on_commas_and_line_breaks_and_drops_empty_tags() -> None:
    assert c.parse_tags(" 1girl,solo ,\n long hair,, \r\n") == ("1girl", "solo", "long hair")


def test_join_then_parse_round_trips() -> None:
    tags = ("trigger", "1girl", "(smile:1.2)", "猫耳")
    assert c.parse_tags(c.join_tags(tags)) == tags
    assert c.join_tags(tags) == "trigger, 1girl, (smile:1.2), 猫耳"


def test_dedupe_keeps_the_first_occurrence() -> None:
    assert c.dedupe_tags(["b", "a", "b", "c", "a"]) == ("b", "a", "c")


def test_case_spaces_and_underscores_do_not_make_two_tags() -> None:
    assert c.dedupe_tags(["Long_Hair", "smile", "long  hair", " LONG HAIR ", ""]) == ("Long_Hair", "smile")
    assert c.add_tags(("long hair",), ["Long_Hair", "smile"]) == ("long hair", "smile")
    assert c.trigger_first(("a", "SKS"), ["sks"]) == ("sks", "a")


def test_parse_accepts_several_texts_or_none() -> None:
    assert c.parse_tags(["a, b ,c", "d\ne,,"]) == ("a", "b", "c", "d", "e")
    assert c.parse_tags(None) == ()


def test_a_caption_file_of_several_lines_is_one_caption() -> None:
    assert c.caption_text("a,b\r\n\nc ,  d\n") == "a, b, c, d"


def test_add_prepends_or_appends_only_missing_tags() -> None:
    assert c.add_tags(("a", "b"), ["b", "x", "x"], "prepend") == ("x", "a", "b")
    assert c.add_tags(("a", "b"), ["y", "a"], "append") == ("a", "b", "y")


def test_remove_drops_every_listed_tag() -> None:
    assert c.remove_tags(("a", "b", "a", "c"), {"a", "c"}) == ("b",)


def test_plain_replace_treats_special_characters_literally() -> None:
    rule = c.Replacement("(red)", r"blue\1")
    assert c.replace_in_tags(("(red) hat", "red"), rule) == (r"blue\1 hat", "red")


def test_regex_replace_uses_groups_and_drops_tags_left_empty() -> None:
    rule = c.Replacement(r"^(\w+) hair$", r"\1", regex=True)
    assert c.replace_in_tags(("long hair", "smile", "red hair"), rule) == ("long", "smile", "red")
    assert c.replace_in_tags(("long hair", "smile"), c.Replacement("smile", "")) == ("long hair",)


def test_replace_only_in_selected_tags_leaves_the_others() -> None:
    rule = c.Replacement("hair", "HAIR")
    assert c.replace_in_tags(("long hair", "hair ribbon"), rule, only={"long hair"}) == ("long HAIR", "hair ribbon")


def test_replace_in_whole_caption_can_merge_or_split_tags() -> None:
    assert c.replace_in_caption(("1girl", "solo", "smile"), c.Replacement(", solo", "")) == ("1girl", "smile")
    assert c.replace_in_caption(("a and b",), c.Replacement(" and ", ", ")) == ("a", "b")


@pytest.mark.parametrize(("search", "replacement"), [("(unclosed", "x"), ("a", r"\9"), ("", "x")])
def test_bad_search_or_replacement_is_a_dataset_error(search: str, replacement: str) -> None:
    with pytest.raises(DatasetError):
        c.replace_in_tags(("a",), c.Replacement(search, replacement, regex=True))


def test_rename_tag_replaces_in_place_and_removes_when_empty() -> None:
    assert c.rename_tag(("a", "b", "c"), "b", "x") == ("a", "x", "c")
    assert c.rename_tag(("a", "b", "c"), "b", "") == ("a", "c")
    assert c.rename_tag(("a", "b"), "b", "a") == ("a",)


def test_sort_orders_by_key_with_alphabetical_ties() -> None:
    tags = ("bb", "a", "C", "ddd")
    assert c.sort_tags(tags, "alphabetical") == ("a", "bb", "C", "ddd")
    assert c.sort_tags(tags, "alphabetical", reverse=True) == ("ddd", "C", "bb", "a")
    assert c.sort_tags(tags, "length") == ("a", "C", "bb", "ddd")
    frequencies = {"ddd": 5, "a": 2, "C": 2}
    assert c.sort_tags(tags, "frequency", frequencies=frequencies) == ("ddd", "a", "C", "bb")
    with pytest.raises(DatasetError):
        c.sort_tags(tags, "random")  # type: ignore[arg-type]


def test_tag_frequencies_count_captions_not_occurrences() -> None:
    assert c.tag_frequencies([("a", "a", "b"), ("a",)]) == {"a": 2, "b": 1}


def test_trigger_first_moves_or_adds_the_trigger_once() -> None:
    assert c.trigger_first(("a", "sks", "b", "sks"), ["sks"]) == ("sks", "a", "b")
    assert c.trigger_first(("a",), ["sks", "style"]) == ("sks", "style", "a")


def test_escape_for_prompt_escapes_attention_syntax() -> None:
    assert c.escape_for_prompt(r"ranni (elden ring) [x] \o/") == r"ranni \(elden ring\) \[x\] \\o/"
    assert c.caption_to_prompt(("a (b)", "c")) == r"a \(b\), c"
    assert c.escape_for_prompt("re:zero, 16:9") == "re:zero, 16:9"  # ":" is no escape in A1111: kept as is


def _word_tokens(text: str) -> int:
    return len(text.replace(",", " , ").split())


def test_truncate_keeps_the_longest_prefix_within_the_token_limit() -> None:
    tags = ("one two", "three", "four five six", "seven")
    # "one two , three" is 4 tokens; adding ", four five six" makes 8.
    assert c.truncate_by_tokens(tags, 7, _word_tokens) == ("one two", "three")
    assert c.truncate_by_tokens(tags, 100, _word_tokens) == tags
    assert c.truncate_by_tokens(tags, 1, _word_tokens) == ()


def test_truncate_needs_few_tokenizer_calls() -> None:
    calls: list[str] = []

    def counting(text: str) -> int:
        calls.append(text)
        return _word_tokens(text)

    tags = tuple(f"tag{i}" for i in range(64))
    assert c.truncate_by_tokens(tags, 21, counting) == tags[:11]
    assert len(calls) <= 8


def test_caption_functions_leave_their_input_untouched() -> None:
    tags = ["b", "a", "b"]
    before = list(tags)
    c.dedupe_tags(tags)
    c.add_tags(tags, ["x"], "prepend")
    c.remove_tags(tags, {"a"})
    c.sort_tags(tags, "length")
    c.trigger_first(tags, ["a"])
    c.replace_in_tags(tags, c.Replacement("b", "z"))
    assert tags == before


def test_truncate_with_a_real_clip_tokenizer(tokenizer_dir) -> None:
    from transformers import CLIPTokenizer

    count = c.clip_token_counter(CLIPTokenizer.from_pretrained(str(tokenizer_dir)))
    # The tiny tokenizer has one token per character; ", " adds one token for the comma.
    assert count("ab, c") == 4
    assert c.truncate_by_tokens(("ab", "c", "de"), 4, count) == ("ab", "c")
    assert c.truncate_by_tokens(("ab", "c", "de"), 3, count) == ("ab",)
