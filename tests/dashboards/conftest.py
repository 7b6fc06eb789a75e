"""Fixtures of the dashboard tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dashboards.truth_fleet import Fleet, running_fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Two replicas and a Prometheus (see :mod:`tests.dashboards.truth_fleet`).

    Module-scoped: every test using it lives in ``test_dashboards_truth.py``, so it starts once;
    a user in another file would start a second fleet.
    """
    with running_fleet(tmp_path_factory.mktemp("truth")) as started:
        yield started
