"""A value the bridge cannot know before a build: what it depends on (the environment, the
clock, another data source, a variable the bridge sets per build), why that is unknown, and what
to write instead. evaluate.py, functions.py and jsontemplate.py raise it; the fingerprint's
error says it.
"""

from __future__ import annotations

from typing import Literal

UnknownKind = Literal["environment", "clock", "data source", "build", "unset", "unsupported"]

# Why each kind of value cannot be known before the build, and what to write instead.
_WHY: dict[UnknownKind, tuple[str, str]] = {
    "environment": (
        "which comes from the environment Packer runs in",
        "Give the value in the template (a variable's default, or a *.auto.pkrvars.hcl file in "
        "an HCL2 template's directory) or in the catalog's `variables`",
    ),
    "clock": (
        "which changes with every run",
        "Write the filter without it (`most_recent` already chooses the newest match)",
    ),
    "data source": (
        "which another data source reads during the build",
        "Give the value in the template or in the catalog's `variables`",
    ),
    "build": (
        "which the bridge sets for each build",
        "Use a variable of your own, with its value in the template or the catalog's `variables`",
    ),
    "unset": (
        "which has no value (no default, no var file and no catalog value sets it), so Packer "
        "would refuse the template too",
        "Give it a default, a value in a var file, or one in the catalog's `variables`",
    ),
    "unsupported": (
        "which the bridge does not evaluate (it evaluates variables, locals, string "
        "interpolation, conditionals and the common string functions)",
        "Write the value with those",
    ),
}
_LEAVE_TO_PACKER = (
    "or set `track_source: false` to leave the choice to Packer (and out of the fingerprint)."
)


class Unknowable(Exception):
    """A value the bridge cannot know before the build; `expression` is the part that decides
    it, `via` the variables and locals it was reached through, and `path` where it is in the
    value written in place (`.name` of an object, `[0]` of a list)."""

    def __init__(
        self,
        expression: str,
        kind: UnknownKind,
        detail: str = "",
        via: tuple[str, ...] = (),
        path: str = "",
    ) -> None:
        super().__init__(expression)
        self.expression = expression
        self.kind = kind
        self.detail = detail
        self.via = via
        self.path = path

    def through(self, step: str) -> Unknowable:
        """The same, reached through the variable or local `step` (the path is inside it)."""
        return Unknowable(self.expression, self.kind, self.detail, (step, *self.via))

    def within(self, step: str) -> Unknowable:
        """The same, in the element `step` (`.key`, `[0]`) of a value written in place."""
        return Unknowable(self.expression, self.kind, self.detail, self.via, step + self.path)

    @property
    def reason(self) -> str:
        """What the value depends on and why that is unknown, for a message."""
        path = f" (through {', '.join(self.via)})" if self.via else ""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.expression}{path}, {_WHY[self.kind][0]}{detail}"

    @property
    def fix(self) -> str:
        """What to write instead, as a sentence."""
        return f"{_WHY[self.kind][1]}, {_LEAVE_TO_PACKER}"
