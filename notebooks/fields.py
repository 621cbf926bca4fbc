"""Input widgets made from declared input types, and their values checked as the engine
checks them.

int → a bounded integer field, bool → a checkbox, enum → a dropdown, sensitive → a
password field, any other → a text field; ``locked`` inputs are read-only; the description
is the tooltip. A value set from code (:meth:`InputField.set_text`) that does not fit its
type is refused with the engine's own message.

Example:
    >>> from engine.recipes.model import InputSpec
    >>> field = InputField(InputSpec("workers", type="int", default="4"))
    >>> type(field.widget).__name__, field.text()
    ('BoundedIntText', '4')
    >>> field.set_text("many")
    'input `workers` expects a whole number, got `many`'
"""

from __future__ import annotations

import ipywidgets as w

from engine.recipes.inputs import check_value, normalise
from engine.recipes.model import InputSpec

#: What a JavaScript number holds exactly: the browser's widget cannot go further.
INT_LIMIT = 2**53 - 1


class InputField:
    """One declared deployment input and its widget."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        self.widget = self._make()
        self.widget.description = spec.name
        self.widget.description_allow_html = False
        self.widget.tooltip = spec.description or f"{spec.type} input"
        self.widget.style = {"description_width": "initial"}
        self.widget.disabled = spec.locked
        self.initial = self.text()

    def _make(self) -> w.ValueWidget:
        spec, default = self.spec, self.spec.default
        if spec.type == "int":
            value = int(default) if default not in (None, "") else 0
            return w.BoundedIntText(value=value, min=-INT_LIMIT, max=INT_LIMIT)
        if spec.type == "bool":
            return w.Checkbox(value=(default or "false").lower() == "true", indent=False)
        if spec.type == "enum":
            options = list(spec.choices)
            return w.Dropdown(options=options, value=default if default in options else None)
        if spec.sensitive:
            return w.Password(value=default or "", placeholder="(secret)")
        return w.Text(value=default or "", placeholder="" if default is not None else "(needed)")

    def text(self) -> str:
        """The widget's value as the text an input takes (``True`` → ``true``)."""
        value = self.widget.value
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else str(value)

    def set_text(self, text: str) -> str | None:
        """Put a value given as text in the widget; why not, or None when it is in."""
        if self.spec.locked:
            return f"input `{self.spec.name}` is locked by the recipe: it stays `{self.initial}`"
        why = check_value(self.spec, text)
        if why:
            return why
        text = normalise(self.spec, text)
        if self.spec.type == "int":
            if abs(int(text)) > INT_LIMIT:
                return f"input `{self.spec.name}`: {text} is too large for the field"
            self.widget.value = int(text)
        elif self.spec.type == "bool":
            self.widget.value = text == "true"
        else:
            self.widget.value = text
        return None

    def problem(self) -> str | None:
        """Why the current value cannot be deployed, or None."""
        text = self.text()
        if self.spec.locked and text != self.initial:
            return f"input `{self.spec.name}` is locked by the recipe: it stays `{self.initial}`"
        if text == "" and self.spec.type == "enum":
            return f"input `{self.spec.name}` needs one of {', '.join(self.spec.choices)}"
        if text == "" and (self.spec.type != "string" or not self._may_be_empty()):
            return f"input `{self.spec.name}` needs a value"
        return check_value(self.spec, text) if text else None

    def _may_be_empty(self) -> bool:
        return self.spec.default is not None or self.spec.optional

    def changed(self) -> bool:
        """Whether the value differs from the recipe's (only those are sent)."""
        return self.text() != self.initial or self.spec.default is None
