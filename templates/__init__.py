"""Recipes shipped with the product: base components, ready deployments, bootstrap files.

Example:
    >>> (TEMPLATES_DIR / "deployments").is_dir()
    True
"""

from pathlib import Path

TEMPLATES_DIR = Path(__file__).parent
