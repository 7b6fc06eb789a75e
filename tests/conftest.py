from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, what: str, how: str) -> None:
    """Skip (outside CI) or fail (in CI) when a system component is missing."""
    if condition:
        return
    msg = f"{what} is not available; install it with: {how}"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


def need_binary(name: str, how: str) -> str:
    path = shutil.which(name)
    need(path is not None, name, how)
    assert path is not None
    return path
