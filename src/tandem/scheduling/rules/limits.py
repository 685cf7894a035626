"""The ACGME limits the rules check, and the arithmetic they share (integer thousandths of an
hour, 28-day windows)."""

from __future__ import annotations

from datetime import time, timedelta
from typing import Final

from tandem.scheduling.domain import (
    RuleName,
    TimeOfDay,
)

WINDOW_DAYS: Final = 28  # ACGME averages duty hours and days off over four weeks
MAX_WEEKLY_HOURS: Final = 80
MAX_WINDOW_HOURS: Final = MAX_WEEKLY_HOURS * WINDOW_DAYS // 7  # 320
MIN_FREE_DAYS_PER_WINDOW: Final = WINDOW_DAYS // 7  # one day in seven, averaged: 4 in 28
MAX_CONSECUTIVE_DUTY_DAYS: Final = 6
# Call. Blocks carry no clock times; for the shift rules an AM block starts at 07:00 and a
# PM block at 13:00, each lasting its rotation's hours.
BLOCK_STARTS: Final = {TimeOfDay.AM: time(7), TimeOfDay.PM: time(13)}
MAX_CONTINUOUS: Final = timedelta(hours=24 + 4)  # 24 h of scheduled duty + 4 for transitions
LONG_CALL: Final = timedelta(hours=24)  # in-house call this long earns ...
REST_AFTER_LONG_CALL: Final = timedelta(hours=14)  # ... 14 hours free after it
REST_BETWEEN_SHIFTS: Final = timedelta(hours=8)
MAX_CALLS_PER_WINDOW: Final = WINDOW_DAYS // 3  # every third night, averaged: 9 in 28
APPROACHING_WEEKLY_HOURS: Final = 76

_SPAN: Final = WINDOW_DAYS - 1  # a window [d, d+27]; an edit on day x touches d in [x-27, x]
_MILLI: Final = 1000  # hours as integer thousandths: exact sums, exact 320 h boundary
_MAX_WINDOW_MILLIHOURS: Final = MAX_WINDOW_HOURS * _MILLI
_MAX_WINDOW_DUTY_DAYS: Final = WINDOW_DAYS - MIN_FREE_DAYS_PER_WINDOW
_APPROACHING_WINDOW_MILLIHOURS: Final = APPROACHING_WEEKLY_HOURS * WINDOW_DAYS // 7 * _MILLI
# Supervision is counted in quarters of a faculty member: every ratio (1, 2, 4) divides 4, so
# the sum stays an integer and ceil() is exact. The solver's linear form
# `4*faculty >= 2*pgy1 + pgy23` (`faculty >= residents` in critical care) is the same sum.
_FACULTY_UNITS: Final = 4

# Specialty names that mean a critical-care setting (compared after `_normalise`).
_CRITICAL_CARE_SPECIALTIES: Final = frozenset(
    {
        "critical care",
        "critical care medicine",
        "icu",
        "intensive care",
        "intensive care unit",
        "micu",
        "sicu",
    }
)
_TIME_ORDER: Final = {TimeOfDay.AM: 0, TimeOfDay.PM: 1}
_RULE_ORDER: Final = {name: index for index, name in enumerate(RuleName)}
