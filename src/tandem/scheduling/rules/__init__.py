"""The ACGME rule engine: one pure-Python check used by everything.

The validation endpoint, the warnings on a manual assignment, the solver's result check and
the swap check all call `validate` (or `warnings_for`), so a schedule means the same thing
everywhere. The engine works on the plain dataclasses of `domain.py` only: no database, no
clock, no I/O.

Rules are small units (`Rule`: a name, a severity and a check function) listed once in
`RULES`; the engine runs them all over a `RuleContext` that indexes the problem once. One
module per family: `rolling` (28-day windows: 80 hours, 1 in 7, approaching, call
frequency), `blocks` (per block: supervision, double booking, absence, coverage), `shifts`
(residents with call: continuous duty and rest); `context` indexes the problem, `engine`
runs the rules, `limits` holds the numbers, `units` the unit checks, `text` the wording.

Speed: a full year for 100 residents (~80k assignments) must validate in well under 0.5 s.
The rolling rules therefore turn each resident's assignments into one array of duty hours and
one of duty days, then read every 28-day window off prefix sums (O(days) per person, no
per-window rescans). Hours are kept as integer thousandths so window sums are exact and the
320-hour boundary never depends on float rounding.
"""

from tandem.scheduling.rules.context import Finding, Rule, RuleContext
from tandem.scheduling.rules.engine import (
    ADVISORY,
    RULES,
    ValidationReport,
    new_violations,
    validate,
    warnings_for,
    warnings_for_call,
)
from tandem.scheduling.rules.limits import (
    BLOCK_STARTS,
    MAX_CALLS_PER_WINDOW,
    MAX_CONSECUTIVE_DUTY_DAYS,
    MAX_WEEKLY_HOURS,
    MAX_WINDOW_HOURS,
    MIN_FREE_DAYS_PER_WINDOW,
    WINDOW_DAYS,
)
from tandem.scheduling.rules.units import (
    HoursCheck,
    calculate_supervision_ratio,
    is_critical_care,
    required_faculty,
    validate_weekly_hours,
)

__all__ = [
    "ADVISORY",
    "BLOCK_STARTS",
    "MAX_CALLS_PER_WINDOW",
    "MAX_CONSECUTIVE_DUTY_DAYS",
    "MAX_WEEKLY_HOURS",
    "MAX_WINDOW_HOURS",
    "MIN_FREE_DAYS_PER_WINDOW",
    "RULES",
    "WINDOW_DAYS",
    "Finding",
    "HoursCheck",
    "Rule",
    "RuleContext",
    "ValidationReport",
    "calculate_supervision_ratio",
    "is_critical_care",
    "new_violations",
    "required_faculty",
    "validate",
    "validate_weekly_hours",
    "warnings_for",
    "warnings_for_call",
]
