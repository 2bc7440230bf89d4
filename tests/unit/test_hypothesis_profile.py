"""Property tests run untimed (tests/conftest.py loads a profile without a deadline),
whether they set no settings of their own or ``@settings`` with other fields."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit import test_assignment, test_users

SLOWER_THAN_THE_DEFAULT_DEADLINE = 0.3  # Hypothesis's default: 200 ms an example


def test_the_loaded_profile_has_no_deadline():
    assert settings.default is not None
    assert settings.default.deadline is None


def test_a_slow_example_is_no_failure():
    @given(st.just(0))
    def plain(_: int) -> None:
        time.sleep(SLOWER_THAN_THE_DEFAULT_DEADLINE)

    @settings(max_examples=1)
    @given(st.just(0))
    def with_settings(_: int) -> None:
        time.sleep(SLOWER_THAN_THE_DEFAULT_DEADLINE)

    plain()  # with a deadline: DeadlineExceeded
    with_settings()


def test_the_suites_given_tests_have_no_deadline():
    # one with no settings of its own, one whose @settings sets only max_examples
    for test in (test_assignment.test_plan_is_complete_disjoint_and_balanced,
                 test_users.test_the_space_and_control_rule_is_any_space_or_unprintable_char):
        assert test._hypothesis_internal_use_settings.deadline is None, test.__name__
