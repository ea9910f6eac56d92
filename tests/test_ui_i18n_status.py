"""Every line the page can show has a Japanese entry: status lines, progress lines, reports and errors.

The status lines are f-strings in the code; this test reads the code (``ast``), finds each one
where it is shown (``message``, ``progress_html``, the trainer's phase and log lines, the ingest
and editor texts, the errors' messages and hints), fills its placeholders with a sample value
and checks that ``translate`` renders it in Japanese. A new English line without an entry in
``lora_ext/ui/messages_ja.py`` fails here, listed with its file and line.
"""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

from lora_ext.ui import i18n

ROOT = Path(__file__).resolve().parents[1] / "lora_ext"
# Every module whose lines can reach the page, i.e. all of them but those that only ever talk to a terminal or a
# REST client: the command line, the REST API's own answers, the merge and inspect commands, multi-process
# training (torchrun), the standalone model loading (before the page exists), and this table itself.
NOT_SHOWN = {
    *("__main__.py", "cli.py", "api.py", "demo.py", "formats/inspect.py", "loading/merge.py"),
    *("training/distributed.py", "hosts/standalone.py", "ui/messages_ja.py", "ui/labels_ja.py"),
}
SCANNED = [
    path
    for path in sorted(ROOT.rglob("*.py"))
    if path.relative_to(ROOT).as_posix() not in NOT_SHOWN and path.relative_to(ROOT).parts[0] != "commands"
]
# Calls whose argument is a line the user reads: name → positions of those arguments (and keyword names).
SHOWN = {
    "message": ((0,), ()),
    "progress_html": ((1,), ("text",)),
    "PhaseInfo": ((3,), ()),
    "status": ((0,), ()),  # TrainEvents.status: the training log / status line
    "skip": ((1,), ()),  # an ingested file's reason for being skipped
    "apply": ((0,), ()),  # an editor action's label (shown as "undo: …")
    "report": ((2,), ()),  # a job's progress text
    "Refused": ((1,), ()),  # a dropped file refused before it is read, with the reason
    "tr": ((0,), ()),  # a text the handler puts in the page's language itself (``ctx.tr``)
    "translate": ((0,), ()),  # the same, through a translator handed in
}
ERRORS = ("Error", "Unavailable", "Diverged", "Cancelled", "Dependency", "Rejected", "UnsafePath")
# Lists whose items are shown as lines (``notices.append(…)``, ``reasons.append(…)``, ``parts.append(…)``).
SHOWN_LISTS = {"notices", "reasons", "lines", "notes", "parts"}
# Functions whose returned text is shown: (file, function).
RETURNED = {
    ("ui/model_line.py", "describe_host"),
    ("app/training.py", "plan_text"),
    ("app/train_settings.py", "planned_steps"),
    ("training/estimate.py", "describe"),
    ("training/estimate.py", "format_minutes"),
    ("training/estimate.py", "long_run_warning"),
    ("training/objective.py", "describe_choice"),
    ("config.py", "auto_preset"),
    ("dataset/ingest.py", "summary"),
    ("dataset/images.py", "unsupported_reason"),
    ("dataset/sources.py", "_zip_refusal"),
}
SAMPLE = "x7"
# Not English sentences: technical tokens and text made only of values.
UNTRANSLATED = {"<lora:x7:0.8>"}


class _Scope:
    """The string values assigned to each local name of one function (``text = f"…"``, ``text += f"…"``)."""

    def __init__(self, function: ast.AST | None) -> None:
        self.values: dict[str, list[str]] = {}
        for node in ast.walk(function) if function is not None else ():
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                self.values.setdefault(node.targets[0].id, []).extend(_sample(node.value, self) or [])
            elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
                added = _sample(node.value, self) or []
                before = list(self.values.get(node.target.id, [SAMPLE]))[:8]
                self.values.setdefault(node.target.id, []).extend(base + extra for base in before for extra in added)

    def of(self, name: str) -> list[str] | None:
        return self.values.get(name) or None


def _sample(node: ast.AST, scope: _Scope) -> list[str] | None:
    """The line(s) ``node`` builds, with each value replaced by a sample; None when it is not built here."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Name):
        return scope.of(node.id)
    if isinstance(node, ast.JoinedStr):
        texts = [""]
        for part in node.values:
            if isinstance(part, ast.Constant):
                texts = [text + str(part.value) for text in texts]
                continue
            inner = _sample(part.value, scope) if isinstance(part, ast.FormattedValue) else None
            texts = [text + extra for text in texts for extra in (inner or [SAMPLE])[:4]]
        return texts
    if isinstance(node, ast.IfExp):
        return [*(_sample(node.body, scope) or []), *(_sample(node.orelse, scope) or [])] or None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _sample(node.left, scope), _sample(node.right, scope)
        if left is None and right is None:
            return None
        return [first + second for first in (left or [SAMPLE])[:4] for second in (right or [SAMPLE])[:4]]
    if isinstance(node, ast.Tuple):
        return [line for item in node.elts for line in _sample(item, scope) or []] or None
    return None


def _called(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _shown_arguments(node: ast.Call) -> list[ast.AST]:
    name = _called(node)
    if name in SHOWN:
        positions, keywords = SHOWN[name]
        return [node.args[index] for index in positions if index < len(node.args)] + [
            keyword.value for keyword in node.keywords if keyword.arg in keywords
        ]
    if name.endswith(ERRORS) and name[:1].isupper() and not hasattr(builtins, name):  # ValueError: internal
        return node.args[:1] + [keyword.value for keyword in node.keywords if keyword.arg == "hint"]
    receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
    if name == "append" and isinstance(receiver, ast.Name) and receiver.id in SHOWN_LISTS:
        return node.args[:1]
    return []


def shown_lines() -> list[tuple[str, str]]:
    """``(where, sample line)`` for every line the scanned code shows."""
    found: list[tuple[str, str]] = []
    for path in SCANNED:
        tree = ast.parse(path.read_text("utf-8"))
        where = path.relative_to(ROOT).as_posix()
        functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
        for function in functions:
            scope = _Scope(function)
            nodes = [node for node in ast.walk(function) if isinstance(node, ast.Call)]
            arguments = [(node, argument) for node in nodes for argument in _shown_arguments(node)]
            if (where, function.name) in RETURNED:
                returns = [node for node in ast.walk(function) if isinstance(node, ast.Return) and node.value]
                arguments += [(node, node.value) for node in returns]
            for node, argument in arguments:
                for line in _sample(argument, scope) or []:
                    found.append((f"lora_ext/{where}:{node.lineno}", line))
    return found


def _untranslated(line: str) -> bool:
    """Whether ``line`` has English words that Japanese does not replace (markup: only our status elements)."""
    words = re.sub(r"<[^>]*>|x7|`[^`]*`", " ", line)
    if not re.search(r"[A-Za-z]{2,}", words) or line.strip() in UNTRANSLATED:
        return False
    if re.match(r"<(div|p|table|details|span|button)\b", line):
        return i18n.translate_html(line, "ja") == line
    return i18n.translate(line, "ja") == line


def test_the_scan_finds_the_lines_users_read_most() -> None:
    lines = {line for _where, line in shown_lines()}
    assert "Created project x7" in lines
    assert "Cancelled at step x7; Resume continues from the state in x7" in lines  # f"…{result.steps}{where}"
    assert "No project is selected." in lines
    assert "caching latents x7/x7" in lines


def test_every_status_line_has_a_japanese_entry() -> None:
    missing = sorted(f"{where}: {line!r}" for where, line in shown_lines() if _untranslated(line))
    assert not missing, "status lines without a Japanese entry in lora_ext/ui/messages_ja.py:\n" + "\n".join(missing)


def test_a_status_line_is_rendered_from_its_template() -> None:
    line = "Training: step 3/8 · epoch 1/2 · loss 0.1234 (smoothed 0.1200) · lr 1.00e-04 · 1.20 it/s · ETA 0:30"
    assert i18n.translate(line, "ja") == (
        "学習: ステップ 3/8 · エポック 1/2 · 損失 0.1234（平滑化 0.1200） · 学習率 1.00e-04 · 1.20 it/秒 · 残り 0:30"
    )
    error = "No project is selected. (create or pick a project first)"
    assert (
        i18n.translate(error, "ja")
        == "プロジェクトが選択されていません。（先にプロジェクトを作成するか選択してください）"
    )
    assert i18n.translate("Created project 猫 (1)", "ja") == "プロジェクト 猫 (1) を作成しました"
    assert (
        i18n.translate(line, "en") == line and i18n.translate("no such line (at all)", "ja") == "no such line (at all)"
    )


def test_status_markup_is_translated_but_tags_and_file_names_are_not() -> None:
    from lora_ext.ui.common import message, progress_html

    markup = message("Created project each", "ok") + progress_html(0.5, "Training: starting…")
    markup += '<button class="tt-chip" data-tag="each">each</button><td>first</td><td class="tt-why">caption without a matching image</td>'
    shown = i18n.translate_html(markup, "ja")
    assert "プロジェクト each を作成しました" in shown and "学習: 開始中…" in shown
    assert '<button class="tt-chip" data-tag="each">each</button><td>first</td>' in shown  # user data untouched
    assert '<td class="tt-why">対応する画像のないキャプション</td>' in shown
    assert i18n.translate_html(markup, "en") == markup
