"""Project-wide test settings, loaded before any test module.

Hypothesis profiles. Hypothesis fails an example that takes longer than its deadline (200 ms
by default), which on a loaded 2-core CI machine is timing, not a bug: a property over a
polars frame or a cryptographic round trip can take that long when another job holds the
cores. So the default profile, ``ci``, has no deadline and does not fail the "too slow"
health check. It stays randomised (``derandomize=False``): each run tries new examples,
which is how properties keep finding bugs, and a failure prints the blob that replays it
(``print_blob``) and is kept in the example database for the next run. Set
``HYPOTHESIS_PROFILE=explore`` for a longer search (1,000 examples per property), or
``HYPOTHESIS_PROFILE=default`` for Hypothesis's own defaults.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", settings.get_profile("ci"), max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
