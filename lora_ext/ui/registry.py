"""Components by name, so handlers and wiring refer to names and never to positions.

Besides components it holds the few helpers that several sections' wiring shares for one built page
(``plan_requests``: ``common.NewestOnly``), so that nothing of a page lives at module level."""

from __future__ import annotations

from typing import Any


class Registry(dict[str, Any]):
    """``name → component`` for the whole tab; sections add to it and wire by name."""

    def __setitem__(self, name: str, component: Any) -> None:
        assert name not in self, f"component name {name!r} is used twice"
        super().__setitem__(name, component)

    def pick(self, *names: str) -> dict[str, Any]:
        """The components called ``names``, as ``{name: component}`` in that order."""
        return {name: self[name] for name in names}
