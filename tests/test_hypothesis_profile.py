"""The project-wide Hypothesis profile (tests/conftest.py): no deadline under load."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def test_the_ci_profile_is_loaded_by_default() -> None:
    current = settings()
    assert current.deadline is None
    assert HealthCheck.too_slow in current.suppress_health_check
    assert current.print_blob
    assert current.derandomize  # CI is reproducible: the same examples every run


@settings(max_examples=2)  # only the example count: the deadline comes from the profile
@given(st.integers())
def test_a_slow_example_is_not_a_failure(value: int) -> None:
    """A property whose examples take longer than Hypothesis's default 200 ms deadline (as
    on a loaded CI machine) passes; under the default profile it raises DeadlineExceeded."""
    time.sleep(0.25)
    assert isinstance(value, int)
