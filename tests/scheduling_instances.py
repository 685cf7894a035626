"""A seeded generator of realistic scheduling problems, for tests and benchmarks.

`make_instance(30, 10, 28)` is a 4-week period for 30 residents (PGY-1/2/3 in turn) and 10
faculty, with five rotations whose minimum coverage grows with the number of residents, an
AM and a PM block every day, and a few absences. The same arguments always give the same
problem (ids included), so benchmark runs and test failures are reproducible.

Options for the infeasible benchmark cases: too few faculty is just a small `faculty`;
`clustered_absences=n` sends n residents away together for `cluster_days` days from the
second week, the "everyone at the same conference" case.
"""

from __future__ import annotations

import random
import uuid
from datetime import date, timedelta
from typing import Final

from tandem.scheduling.domain import (
    Absence,
    Assignment,
    AssignmentRole,
    Block,
    Person,
    PersonType,
    Rotation,
    RotationKind,
    ScheduleProblem,
    TimeOfDay,
)

DEFAULT_START: Final = date(2027, 1, 4)  # a Monday
# At most this share of residents / faculty away on any one day from random absences, so a
# generated instance stays feasible unless an infeasible option asks otherwise.
_MAX_AWAY_SHARE: Final = 0.15


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def make_rotations(residents: int, rng: random.Random) -> list[Rotation]:
    """Five rotations; minimums scale with the residents so every size is comparably tight.

    For 30 residents a block needs 9 (4 inpatient, 3 clinic, 2 ICU) of the ~25 who may work
    it, and 4-6 of the faculty to supervise them.
    """
    return [
        Rotation(
            _uuid(rng),
            "Clinic",
            RotationKind.CLINIC,
            min_residents=max(1, residents // 10),
            max_residents=max(2, residents // 4),
            hours_per_block=5.0,
        ),
        Rotation(
            _uuid(rng),
            "Inpatient",
            RotationKind.INPATIENT,
            min_residents=max(1, residents * 3 // 20),
            max_residents=max(2, residents // 3),
            hours_per_block=6.0,
        ),
        Rotation(
            _uuid(rng),
            "ICU",
            RotationKind.ICU,
            min_residents=residents // 15,
            max_residents=max(1, residents // 10),
            hours_per_block=10.0,  # long shifts: the 80-hour rule binds, not only 1 in 7
        ),
        Rotation(
            _uuid(rng),
            "Procedures",
            RotationKind.PROCEDURES,
            min_residents=0,
            max_residents=max(1, residents // 10),
            hours_per_block=6.0,
        ),
        Rotation(
            _uuid(rng),
            "Conference",
            RotationKind.CONFERENCE,
            min_residents=0,
            max_residents=max(2, residents // 2),
            requires_supervision=False,
            hours_per_block=3.0,
        ),
    ]


def _absences(
    people: list[Person],
    first: date,
    last: date,
    rng: random.Random,
    share: float,
    lengths: tuple[int, int],
) -> list[Absence]:
    """Random vacations, refused when they would put too many people away on one day."""
    away: dict[date, int] = {}
    cap = int(len(people) * _MAX_AWAY_SHARE)
    span = (last - first).days + 1
    out: list[Absence] = []
    for person in people:
        if rng.random() >= share:
            continue
        length = rng.randint(*lengths)
        begin = first + timedelta(days=rng.randrange(max(1, span - length + 1)))
        days = [begin + timedelta(days=i) for i in range(length)]
        if any(away.get(d, 0) + 1 > cap for d in days):
            continue
        for d in days:
            away[d] = away.get(d, 0) + 1
        out.append(Absence(person.id, days[0], days[-1]))
    return out


def make_instance(
    residents: int,
    faculty: int,
    days: int,
    *,
    seed: int = 0,
    start_date: date = DEFAULT_START,
    absences: bool = True,
    clustered_absences: int = 0,
    cluster_days: int = 7,
    history: bool = False,
) -> ScheduleProblem:
    """A deterministic problem for `seed`.

    - `absences`: random vacations (3-7 days for a third of residents, 1-4 days for a fifth
      of faculty, never more than 15 % of either away on one day);
    - `clustered_absences`: that many residents (the first ones) away together from day 7
      for `cluster_days` days;
    - `history`: the 27 days before the period carry a fixed history (each resident on
      Conference in a 6-on-1-off pattern), blocks and assignments included, so the first
      week's rolling windows are already partly used.
    """
    if residents < 1 or faculty < 0 or days < 1:
        raise ValueError("need at least one resident and one day")
    rng = random.Random(seed)
    end_date = start_date + timedelta(days=days - 1)
    people: list[Person] = [
        Person(
            _uuid(rng),
            PersonType.RESIDENT,
            pgy_level=1 + i % 3,
            specialty="Internal Medicine",
            name=f"Resident {i + 1:03d}",
        )
        for i in range(residents)
    ]
    staff = [
        Person(
            _uuid(rng), PersonType.FACULTY, specialty="Internal Medicine", name=f"Dr {i + 1:03d}"
        )
        for i in range(faculty)
    ]
    rotations = make_rotations(residents, rng)
    first_day = start_date - timedelta(days=27) if history else start_date
    blocks: list[Block] = []
    day = first_day
    while day <= end_date:
        blocks.extend(Block(_uuid(rng), day, tod) for tod in (TimeOfDay.AM, TimeOfDay.PM))
        day += timedelta(days=1)
    absence_list: list[Absence] = []
    if absences:
        absence_list += _absences(people, start_date, end_date, rng, 1 / 3, (3, 7))
        absence_list += _absences(staff, start_date, end_date, rng, 1 / 5, (1, 4))
    if clustered_absences:
        begin = start_date + timedelta(days=7)
        clustered = {p.id for p in people[:clustered_absences]}
        absence_list = [a for a in absence_list if a.person_id not in clustered]
        absence_list += [
            Absence(pid, begin, begin + timedelta(days=cluster_days - 1))
            for pid in sorted(clustered)
        ]
    assignments: list[Assignment] = []
    if history:
        conference = rotations[-1]
        by_day: dict[date, list[Block]] = {}
        for b in blocks:
            by_day.setdefault(b.date, []).append(b)
        for i, person in enumerate(people):
            for offset in range(27):
                d = first_day + timedelta(days=offset)
                # One day off in seven, staggered so Conference never overflows.
                if (offset + i) % 7 == 0:
                    continue
                block = by_day[d][(offset + i) % 2]
                assignments.append(
                    Assignment(person.id, block.id, conference.id, AssignmentRole.PRIMARY)
                )
    return ScheduleProblem(
        start_date=start_date,
        end_date=end_date,
        people={p.id: p for p in [*people, *staff]},
        blocks={b.id: b for b in blocks},
        rotations={r.id: r for r in rotations},
        assignments=tuple(assignments),
        absences=tuple(absence_list),
    )
