"""Unit checks usable on their own: weekly hours, supervision ratios, faculty needed."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from tandem.scheduling.domain import (
    Person,
    PersonType,
    Rotation,
    RotationKind,
)
from tandem.scheduling.rules.limits import (
    _CRITICAL_CARE_SPECIALTIES,
    _FACULTY_UNITS,
    MAX_WEEKLY_HOURS,
)
from tandem.scheduling.rules.text import _num


@dataclass(frozen=True, slots=True)
class HoursCheck:
    is_valid: bool
    message: str


def validate_weekly_hours(hours: float) -> HoursCheck:
    """Check one week's duty hours against the ACGME limit (0..80 inclusive)."""
    if math.isnan(hours):
        return HoursCheck(False, "weekly duty hours must be a number")
    if hours < 0:
        return HoursCheck(False, f"{_num(hours)} weekly duty hours is negative")
    if hours > MAX_WEEKLY_HOURS:
        return HoursCheck(
            False,
            f"{_num(hours)} duty hours a week exceeds the limit of {MAX_WEEKLY_HOURS}",
        )
    return HoursCheck(True, f"{_num(hours)} duty hours a week is within {MAX_WEEKLY_HOURS}")


def _normalise(specialty: str) -> str:
    # "Critical-Care", "critical_care " and "CRITICAL  CARE" all mean the same setting.
    return " ".join(specialty.replace("-", " ").replace("_", " ").casefold().split())


def _critical(specialty: str | None, kind: RotationKind | None) -> bool:
    if kind is RotationKind.ICU:
        return True
    return specialty is not None and _normalise(specialty) in _CRITICAL_CARE_SPECIALTIES


def is_critical_care(rotation: Rotation) -> bool:
    """Whether a rotation is a critical-care setting (1:1 supervision whatever the level).

    The solver must use this too (not only `kind == icu`), so a rotation whose specialty is
    "Critical Care" is constrained and checked the same way.
    """
    return _critical(rotation.specialty, rotation.kind)


def calculate_supervision_ratio(
    pgy_level: int, specialty: str | None = None, kind: RotationKind | None = None
) -> int:
    """Residents one faculty member may supervise: 2 for PGY-1, 4 for PGY-2/3, 1 in ICU."""
    # bool is an int subclass; True would silently read as PGY-1.
    if isinstance(pgy_level, bool) or not isinstance(pgy_level, int) or not 1 <= pgy_level <= 3:
        raise ValueError(f"pgy_level must be 1, 2 or 3, not {pgy_level!r}")
    if _critical(specialty, kind):
        return 1
    return 2 if pgy_level == 1 else 4


def required_faculty(rotation: Rotation, residents: Iterable[Person]) -> int:
    """Supervising faculty one block of `rotation` needs: ceil(sum of 1/ratio).

    Faculty in `residents` are skipped (they never need supervising); a resident without a
    valid PGY level raises ValueError.
    """
    if not rotation.requires_supervision:
        return 0
    units = 0
    for person in residents:
        if person.type is not PersonType.RESIDENT:
            continue
        if person.pgy_level is None:
            raise ValueError(f"resident {person.id} has no pgy_level")
        ratio = calculate_supervision_ratio(person.pgy_level, rotation.specialty, rotation.kind)
        units += _FACULTY_UNITS // ratio
    return _faculty_for(units)


def _faculty_for(units: int) -> int:
    return -(-units // _FACULTY_UNITS)
