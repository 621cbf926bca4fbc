"""Canonical JSON: sorted keys, 2-space indent, trailing newline; same input, same bytes.

Example:
    >>> dumps({"b": 1, "a": [1, 2]})
    '{\\n  "a": [\\n    1,\\n    2\\n  ],\\n  "b": 1\\n}\\n'
"""

from __future__ import annotations

import json
from typing import Any


def dumps(value: Any) -> str:
    """The canonical text of a JSON-able value."""
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
