"""A step's typed stats (koble.linkage.step_stats): what the run record and audit event get."""

from __future__ import annotations

import typing

from hypothesis import given
from hypothesis import strategies as st

from koble.linkage.executor import HANDLERS
from koble.linkage.step_stats import StepStats

NAMES = ("rows_sent", "rows_delivered", "rows", "rows_stored", "rows_rejected", "domain",
         "key_id", "other")  # fmt: skip
VALUES = st.one_of(st.integers(-5, 10**12), st.booleans(), st.none(), st.text(max_size=5))


def test_every_handler_returns_step_stats() -> None:
    for action, handler in HANDLERS.items():
        assert typing.get_type_hints(handler)["return"] is StepStats, action


@given(st.dictionaries(st.sampled_from(NAMES), VALUES))
def test_audit_fields_come_from_the_figures_by_their_names(figures: dict[str, object]) -> None:
    stats = StepStats.of(figures)

    def count(*names: str) -> int | None:
        found = [figures[n] for n in names if type(figures.get(n)) is int]
        return found[0] if found else None  # type: ignore[return-value]

    assert stats.rows_in == count("rows_sent")
    assert stats.rows_out == count("rows_delivered", "rows", "rows_stored")
    assert stats.rejected == count("rows_rejected")
    assert stats.domain == (figures["domain"] if isinstance(figures.get("domain"), str) else None)
    assert stats.key_id == (figures["key_id"] if isinstance(figures.get("key_id"), str) else None)
    assert stats.record() == figures  # run.json keeps the figures as the step gave them


def test_a_steps_own_audit_details_stay_in_its_record() -> None:
    figures = {"rows": 3, "linked": 2, "audit": {"threshold": 0.9}}
    stats = StepStats.of(figures)
    assert dict(stats.audit) == {"threshold": 0.9}
    assert stats.record() == figures
    assert StepStats.of({"audit": "not a mapping"}).audit == {}


def test_stats_do_not_change_with_the_dict_they_came_from() -> None:
    figures: dict[str, object] = {"rows": 1}
    stats = StepStats.of(figures)
    figures["rows"] = 2
    assert stats.record() == {"rows": 1} and stats.rows_out == 1
