"""What Train Tools relies on in each WebUI, as executable checks: one module per WebUI (``a1111``, ``forge``,
``reforge``, ``neo``), each naming the real commit it was written against and listing its checks in ``CHECKS``.

The same checks run in two places, so that a fake cannot drift from the WebUI it stands for unnoticed:

- against the fakes in CI (``tests/test_contracts.py``), and
- inside the real WebUI, by the probe extension of the opt-in real-WebUI tests (``tests/real_webui/``), which loads
  these files by path.

A check reads the WebUI's own modules (the loaded model: call it after one generation) and may use ``lora_ext``
(the WebUI has it on its path through our extension); it raises ``AssertionError`` saying what differs.
Prose for each contract: ``docs/hosts.md``.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable


def run(checks: Iterable[Callable[[], None]]) -> dict[str, str]:
    """Every check's outcome by name: ``"ok"``, or what failed in one line."""
    results: dict[str, str] = {}
    for check in checks:
        try:
            check()
            results[check.__name__] = "ok"
        except Exception as error:  # noqa: BLE001  (a report: every check runs, each failure is named)
            where = traceback.extract_tb(error.__traceback__)[-1]
            results[check.__name__] = f"{type(error).__name__}: {error} (line {where.lineno})".replace("\n", " ")
    return results
