"""Fixtures of the driver tests."""

from __future__ import annotations

import pytest

from tests.drivers.helpers import Recorder


@pytest.fixture
def recorder() -> Recorder:
    """Collects what a DriverHub emits."""
    return Recorder()
