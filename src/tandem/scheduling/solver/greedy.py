"""A greedy first schedule for one 4-week block, given to CP-SAT as a solution hint.

CP-SAT's own first-solution heuristics need 1-7 s on the 30-resident block (the coverage
minimums, the day-off windows and the faculty headcount interact); this pass fills every
rotation's minimum block by block, least-loaded resident first, checking the same rolling
limits, keeping faculty for the rotations still to fill, then moves single assignments from
the most to the least loaded residents. When it succeeds CP-SAT starts from a valid, already
fairly even schedule and spends its time on the fairness objective (or is skipped when the
objective is already 0); when it gets stuck (a tight instance) it returns None and CP-SAT
looks for a first schedule on its own.
"""

from __future__ import annotations

from datetime import date, timedelta

from tandem.scheduling.rules import is_critical_care
from tandem.scheduling.solver.model import (
    MAX_CALLS_PER_WINDOW,
    MAX_WINDOW_DUTY_DAYS,
    MAX_WINDOW_MILLIHOURS,
    RUN,
    SPAN,
    WINDOW_DAYS,
    CallChoice,
    Choice,
    Prepared,
    available_faculty,
    call_fairness,
    dates,
    fairness,
    fixed_rows,
    millihours,
    present_residents,
    supervision_units,
)


def _window_max(row: list[int], day: int, length: int) -> int:
    """The largest sum over windows of `length` days that hold `day`."""
    lo = max(0, day - length + 1)
    hi = min(len(row), day + length)
    best = current = sum(row[lo : lo + length])
    for start in range(lo + 1, day + 1):
        if start + length - 1 >= hi:
            break
        current += row[start + length - 1] - row[start - 1]
        best = max(best, current)
    return best


def greedy(
    prep: Prepared, first: date, last: date
) -> tuple[set[Choice], set[CallChoice], int] | None:
    """A valid schedule of days [first, last] (blocks and calls) and its objective value, or
    None if stuck. Calls go first, night by night, to the resident with the fewest calls
    (weekend calls on weekends) who may take it; the blocks then fill around them."""
    state = _State(prep, first, last)
    if not state.assign_calls() or not state.fill():
        return None
    state.balance()
    return state.chosen, state.calls, state.objective()


class _State:
    """The partial schedule: rolling arrays per resident, headcounts per block."""

    def __init__(self, prep: Prepared, first: date, last: date) -> None:
        self.prep = prep
        self.days = dates(first, last)
        self.duty: list[list[int]] = []
        self.hours: list[list[int]] = []
        for r in prep.residents:
            d_row, h_row = fixed_rows(prep, r, first, len(self.days))
            self.duty.append(d_row)
            self.hours.append(h_row)
        # Blocks in chunk order, with their day index and weekend flag.
        self.block_day: list[int] = []
        self.block_weekend: list[bool] = []
        self.block_faculty: list[int] = []
        for di, day in enumerate(self.days):
            for _ in prep.blocks_by_day.get(day, ()):
                self.block_day.append(SPAN + di)
                self.block_weekend.append(day.weekday() >= 5)
                self.block_faculty.append(available_faculty(prep, day))
        self.faculty_used = [0] * len(self.block_day)
        self.busy: list[set[int]] = [set() for _ in self.block_day]
        self.units: dict[tuple[int, int], int] = {}
        self.mine: list[list[tuple[int, int]]] = [[] for _ in prep.residents]
        # Duty and weekend blocks per resident: carried from earlier chunks, then chosen.
        self.counts, self.weekends = prep.carried_duty()
        self.rot_hours = [millihours(rot) for rot in prep.rotations]
        self.present = present_residents(prep, self.days)
        self.chosen: set[Choice] = set()
        self.absent = [
            {SPAN + di for di, d in enumerate(self.days) if prep.is_absent(r.id, d)}
            for r in prep.residents
        ]
        # Call: the nights chosen, each resident's totals (carried over, then chosen), the
        # days that must stay free of blocks (after a call) or keep their duty (a call's
        # or a fixed one), and per resident the days whose night they are on call.
        self.block_tod = [
            b.time_of_day.value for d in self.days for b in prep.blocks_by_day.get(d, ())
        ]
        self.calls: set[CallChoice] = set()
        self.call_totals = [list(prep.call_counts.get(r.id, [0, 0, 0])) for r in prep.residents]
        n = len(self.days)
        self.keep_duty = [{SPAN + di for di in range(n) if row[SPAN + di]} for row in self.duty]
        self.post_call = [
            {SPAN + di for di, d in enumerate(self.days) if prep.on_call(r.id, d - _DAY)}
            for r in prep.residents
        ]
        self.call_day: list[set[int]] = [set() for _ in prep.residents]
        origin = first - timedelta(days=SPAN)
        self.call_row: list[list[int]] = []
        for r in prep.residents:
            row = [0] * len(self.duty[0]) if self.duty else []
            for night in prep.call_nights.get(r.id, ()):
                i = (night - origin).days
                if 0 <= i < len(row):
                    row[i] = 1
            self.call_row.append(row)

    def objective(self) -> int:
        value = fairness(self.counts, self.weekends, self.present)
        if self.prep.call is not None:
            value += call_fairness(self.call_totals, self.present)
        return value

    def assign_calls(self) -> bool:
        """`per_night` residents on call every night, the fewest calls first."""
        shape = self.prep.call
        if shape is None:
            return True
        holidays = shape.plan.holidays
        for di, day in enumerate(self.days):
            weekend, holiday = day.weekday() >= 5, day in holidays
            ranked = sorted(
                range(len(self.prep.residents)),
                key=lambda ri: (
                    self.call_totals[ri][2] if holiday else 0,
                    self.call_totals[ri][1] if weekend else 0,
                    self.call_totals[ri][0],
                    self.counts[ri],
                ),
            )
            need = shape.plan.per_night
            for ri in ranked:
                if need == 0:
                    break
                if self._take_call(ri, di, day):
                    totals = self.call_totals[ri]
                    totals[0] += 1
                    totals[1] += weekend
                    totals[2] += holiday
                    need -= 1
            if need:
                return False
        return True

    def _take_call(self, ri: int, di: int, day: date) -> bool:
        """Puts resident `ri` on call the night of chunk day `di` if every limit allows."""
        prep, shape = self.prep, self.prep.call
        assert shape is not None
        person = prep.residents[ri].id
        today, tomorrow = SPAN + di, SPAN + di + 1
        after = day + _DAY
        if (
            today in self.absent[ri]
            or prep.is_absent(person, day)
            or prep.is_absent(person, after)
            or (ri, di - 1) in self.calls
            or prep.on_call(person, day - _DAY)
            or prep.on_call(person, after)
            or after in prep.fixed_hours.get(person, {})
            or today in self.post_call[ri]
        ):
            return False
        row = self.call_row[ri]
        row[today] = 1
        if _window_max(row, today, WINDOW_DAYS) > MAX_CALLS_PER_WINDOW:
            row[today] = 0
            return False
        duty, hours = self.duty[ri], self.hours[ri]
        before = (duty[today], duty[tomorrow], hours[today], hours[tomorrow])
        duty[today] = 1
        hours[today] += shape.head
        if shape.tail:
            duty[tomorrow] = 1
            hours[tomorrow] += shape.tail
        if not all(_within(duty, hours, d) for d in (today, tomorrow)):
            duty[today], duty[tomorrow], hours[today], hours[tomorrow] = before
            row[today] = 0
            return False
        self.calls.add((ri, di))
        self.keep_duty[ri].update((today, tomorrow) if shape.tail else (today,))
        self.post_call[ri].add(tomorrow)
        self.call_day[ri].add(today)
        return True

    def _faculty_after(self, bi: int, ki: int, units: int) -> int:
        old = -(-self.units.get((bi, ki), 0) // 4)
        return self.faculty_used[bi] - old + -(-units // 4)

    def _add(self, ri: int, bi: int, ki: int) -> None:
        day = self.block_day[bi]
        self.duty[ri][day] = 1
        self.hours[ri][day] += self.rot_hours[ki]
        self.counts[ri] += 1
        self.weekends[ri] += self.block_weekend[bi]
        self.busy[bi].add(ri)
        self.mine[ri].append((bi, ki))
        self.chosen.add((ri, bi, ki))
        rot = self.prep.rotations[ki]
        if rot.requires_supervision:
            units = self.units.get((bi, ki), 0) + supervision_units(rot, self.prep.residents[ri])
            self.faculty_used[bi] = self._faculty_after(bi, ki, units)
            self.units[(bi, ki)] = units

    def _remove(self, ri: int, bi: int, ki: int) -> None:
        day = self.block_day[bi]
        self.hours[ri][day] -= self.rot_hours[ki]
        self.counts[ri] -= 1
        self.weekends[ri] -= self.block_weekend[bi]
        self.busy[bi].discard(ri)
        self.mine[ri].remove((bi, ki))
        self.chosen.discard((ri, bi, ki))
        if day not in self.keep_duty[ri] and not any(
            self.block_day[b] == day for b, _ in self.mine[ri]
        ):
            self.duty[ri][day] = 0
        rot = self.prep.rotations[ki]
        if rot.requires_supervision:
            units = self.units[(bi, ki)] - supervision_units(rot, self.prep.residents[ri])
            self.faculty_used[bi] = self._faculty_after(bi, ki, units)
            self.units[(bi, ki)] = units

    def _fits(
        self, ri: int, bi: int, ki: int, units_before: int, reserve: int = 0, later: int = 0
    ) -> bool:
        """Whether resident `ri` may take rotation `ki` on block `bi`, leaving `reserve`
        faculty for the rotations still to be filled on this block and room for `later`
        more residents on this one (at their cheapest, PGY-2/3)."""
        day = self.block_day[bi]
        if ri in self.busy[bi] or day in self.absent[ri] or day in self.post_call[ri]:
            return False
        shape = self.prep.call
        if (
            shape is not None
            and day in self.call_day[ri]
            and (self.block_tod[bi], ki) in shape.overlaps
        ):
            return False
        rot = self.prep.rotations[ki]
        if rot.requires_supervision:
            units = units_before + supervision_units(rot, self.prep.residents[ri])
            units += later * (4 if is_critical_care(rot) else 1)
            if self._faculty_after(bi, ki, units) + reserve > self.block_faculty[bi]:
                return False
        return _can_work(self.duty[ri], self.hours[ri], day, self.rot_hours[ki])

    def fill(self) -> bool:
        """Every rotation's minimum, block by block, least-loaded resident first."""
        prep = self.prep
        # The most constrained first: critical care (1:1), then other supervised rotations.
        order = sorted(
            (ki for ki, rot in enumerate(prep.rotations) if rot.min_residents > 0),
            key=lambda ki: (
                not is_critical_care(prep.rotations[ki]),
                not prep.rotations[ki].requires_supervision,
            ),
        )
        # The fewest faculty each rotation's minimum can need (all PGY-2/3), kept free for
        # the rotations after it: otherwise PGY-1 residents on an early rotation can use up
        # the faculty a later one needs.
        least = [
            0
            if not rot.requires_supervision
            else rot.min_residents
            if is_critical_care(rot)
            else -(-rot.min_residents // 4)
            for rot in prep.rotations
        ]
        reserve = {ki: sum(least[k] for k in order[pos + 1 :]) for pos, ki in enumerate(order)}
        residents = range(len(prep.residents))
        for bi, weekend in enumerate(self.block_weekend):
            for ki in order:
                need = prep.rotations[ki].min_residents
                ranked = sorted(
                    residents,
                    key=lambda ri: (
                        (self.weekends[ri], self.counts[ri])
                        if weekend
                        else (self.counts[ri], self.weekends[ri])
                    ),
                )
                for ri in ranked:
                    if need == 0:
                        break
                    units = self.units.get((bi, ki), 0)
                    if self._fits(ri, bi, ki, units, reserve[ki], need - 1):
                        self._add(ri, bi, ki)
                        need -= 1
                if need:
                    return False
        return True

    def balance(self, rounds: int = 2000) -> None:
        """Move single assignments from the most to the least loaded residents while that
        lowers 2*sum(count^2) + sum(weekend^2) (so it ends), until the objective is 0."""
        prep = self.prep
        for _ in range(rounds):
            if self.objective() == 0:
                return
            load = sorted(
                range(len(prep.residents)), key=lambda r: 2 * self.counts[r] + self.weekends[r]
            )
            receivers = [r for r in load if r in self.present][:6]
            donors = load[::-1][:6]
            if not self._one_move(donors, receivers):
                return

    def _one_move(self, donors: list[int], receivers: list[int]) -> bool:
        for ri in donors:
            for rj in receivers:
                dc = 2 * (self.counts[rj] - self.counts[ri]) + 2
                for bi, ki in list(self.mine[ri]):
                    dw = (
                        2 * (self.weekends[rj] - self.weekends[ri]) + 2
                        if self.block_weekend[bi]
                        else 0
                    )
                    if 2 * dc + dw >= 0:
                        continue
                    self._remove(ri, bi, ki)
                    if self._fits(rj, bi, ki, self.units.get((bi, ki), 0)):
                        self._add(rj, bi, ki)
                        return True
                    self._add(ri, bi, ki)
        return False


_DAY = timedelta(days=1)


def _within(duty: list[int], hours: list[int], day: int) -> bool:
    """Whether the windows holding `day` keep the day-off and duty-hour limits."""
    return (
        _window_max(duty, day, WINDOW_DAYS) <= MAX_WINDOW_DUTY_DAYS
        and _window_max(duty, day, RUN) <= RUN - 1
        and _window_max(hours, day, WINDOW_DAYS) <= MAX_WINDOW_MILLIHOURS
    )


def _can_work(duty: list[int], hours: list[int], day: int, extra_hours: int) -> bool:
    if not duty[day]:
        duty[day] = 1
        try:
            if _window_max(duty, day, WINDOW_DAYS) > MAX_WINDOW_DUTY_DAYS:
                return False
            if _window_max(duty, day, RUN) > RUN - 1:
                return False
        finally:
            duty[day] = 0
    hours[day] += extra_hours
    try:
        return _window_max(hours, day, WINDOW_DAYS) <= MAX_WINDOW_MILLIHOURS
    finally:
        hours[day] -= extra_hours
