"""Project-wide test settings, loaded before any test module.

Hypothesis profiles. Hypothesis fails an example that takes longer than its deadline (200 ms
by default), which on a loaded 2-core CI machine is timing, not a bug: a property over a
polars frame or a cryptographic round trip can take that long when another job holds the
cores. So the default profile, ``ci``, has no deadline and does not fail the "too slow"
health check. It is also derandomised: every run tries the same examples, so a red CI is a
change in the code, never a new roll of the dice (a random run once found a payload count
that was a valid fødselsnummer, a fault of the test). New examples are searched for on
purpose, with ``HYPOTHESIS_PROFILE=explore``: randomised, 1,000 examples per property, a
failure printing the blob that replays it. ``HYPOTHESIS_PROFILE=default`` gives
Hypothesis's own defaults.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "explore", settings.get_profile("ci"), derandomize=False, max_examples=1000
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
