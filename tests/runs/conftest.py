"""Fixtures of the run tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import outside_tmp


@pytest.fixture
def outside() -> Iterator[Path]:
    """A folder outside ``/tmp`` (see :func:`tests.e2e.outside_tmp`), removed afterwards."""
    folder = outside_tmp()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
