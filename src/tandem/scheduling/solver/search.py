"""`solve`: the period one 4-week block at a time, the greedy start, CP-SAT's search, the
diagnosis of an infeasible block, the faculty named; stoppable through a `Cancellation`.
The method is described in the package's docstring (`tandem.scheduling.solver`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Final, Literal

from ortools.sat.python import cp_model

from tandem.scheduling.domain import Assignment, AssignmentRole, Block, Call, ScheduleProblem
from tandem.scheduling.solver.checks import explain_slack, quick_checks
from tandem.scheduling.solver.greedy import greedy
from tandem.scheduling.solver.model import (
    WINDOW_DAYS,
    CallChoice,
    Choice,
    Prepared,
    block_days,
    build_chunk,
    call_fairness,
    dates,
    fairness,
    millihours,
    prepare,
    present_residents,
    supervision_units,
)

SolveStatus = Literal["optimal", "feasible", "infeasible", "timeout"]

CHUNK_DAYS: Final = WINDOW_DAYS  # one 4-week block per CP-SAT model
# How long a generation searches unless told otherwise (the setting's default says the same).
DEFAULT_TIMEOUT_SECONDS: Final = 10.0
# The diagnosis pass only has to find where the slack goes, not prove its minimum.
_DIAGNOSIS_SECONDS: Final = 1.0
_MIN_CHUNK_SECONDS: Final = 0.05


class SolveCancelled(Exception):
    """`solve` was stopped through its `Cancellation`."""


class Cancellation:
    """Stops a `solve` running in another thread: the CP-SAT search in progress ends at once,
    no further step starts, and `solve` raises SolveCancelled. Without it an abandoned solve
    keeps a core busy until its own deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._running: cp_model.CpSolver | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until cancelled (True) or `timeout` seconds have passed (False)."""
        return self._cancelled.wait(timeout)

    def cancel(self) -> None:
        with self._lock:
            self._cancelled.set()
            if self._running is not None:
                self._running.stop_search()

    def check(self) -> None:
        if self.cancelled:
            raise SolveCancelled("The solve was cancelled")

    def run(
        self,
        solver: cp_model.CpSolver,
        model: cp_model.CpModel,
        callback: cp_model.CpSolverSolutionCallback | None = None,
    ) -> cp_model.CpSolverStatus:
        """`solver.solve(model, callback)`, stoppable by `cancel`. A cancel in the instant
        before CP-SAT's search exists is not lost: `_Watcher` stops at the next solution."""
        with self._lock:
            self.check()
            self._running = solver
        try:
            return solver.solve(model, callback)
        finally:
            with self._lock:
                self._running = None
            self.check()


@dataclass(frozen=True, slots=True)
class SolveProgress:
    """Reported after every solution found and every finished 4-week block."""

    block_index: int  # 0-based index of the 4-week block being solved
    block_total: int
    objective: float | None  # the current block's best objective so far
    elapsed_seconds: float
    done: bool = False  # True when the block is finished


@dataclass(frozen=True, slots=True)
class ChunkStatistics:
    first: date
    last: date
    status: str  # CP-SAT's status name
    objective: float | None
    bound: float | None
    variables: int
    build_seconds: float  # greedy and model build
    first_feasible_seconds: float | None  # from the start of this block (greedy included)
    wall_seconds: float


@dataclass(frozen=True, slots=True)
class SolveResult:
    status: SolveStatus
    assignments: tuple[Assignment, ...]
    objective: float | None
    bound: float | None
    gap: float | None
    wall_seconds: float
    build_seconds: float
    # The sum over 4-week blocks of the time from the block's start (greedy, build, search)
    # to its first schedule: what a run stopping at the first feasible schedule would take.
    first_feasible_seconds: float | None
    explanation: str | None = None
    seed: int = 0
    workers: int = 2
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    chunks: tuple[ChunkStatistics, ...] = field(default=())
    calls: tuple[Call, ...] = ()  # the generated in-house calls (with a `CallPlan`)

    def statistics(self) -> dict[str, object]:
        """JSON-ready figures for the schedule row."""
        return {
            "status": self.status,
            "objective": self.objective,
            "bound": self.bound,
            "gap": self.gap,
            "wall_seconds": round(self.wall_seconds, 4),
            "build_seconds": round(self.build_seconds, 4),
            "first_feasible_seconds": (
                None
                if self.first_feasible_seconds is None
                else round(self.first_feasible_seconds, 4)
            ),
            "explanation": self.explanation,
            "assignments": len(self.assignments),
            "calls": len(self.calls),
            "seed": self.seed,
            "workers": self.workers,
            "timeout_seconds": self.timeout_seconds,
            "blocks": [
                {
                    "first": c.first.isoformat(),
                    "last": c.last.isoformat(),
                    "status": c.status,
                    "objective": c.objective,
                    "bound": c.bound,
                    "variables": c.variables,
                    "build_seconds": round(c.build_seconds, 4),
                    "first_feasible_seconds": (
                        None
                        if c.first_feasible_seconds is None
                        else round(c.first_feasible_seconds, 4)
                    ),
                    "wall_seconds": round(c.wall_seconds, 4),
                }
                for c in self.chunks
            ],
        }


class _Watcher(cp_model.CpSolverSolutionCallback):
    """Notes when a block's first solution arrives and forwards progress."""

    def __init__(
        self,
        on_progress: Callable[[SolveProgress], None] | None,
        index: int,
        total: int,
        started: float,
        cancellation: Cancellation,
    ) -> None:
        super().__init__()
        self._cancellation = cancellation
        self.first_seconds: float | None = None
        self.feasibility = False  # solving without the objective: no objective to report
        self._on_progress = on_progress
        self._index, self._total, self._started = index, total, started
        self._block_started = started

    def restart(self, block_started: float) -> None:
        self._block_started = block_started

    def on_solution_callback(self) -> None:
        if self._cancellation.cancelled:
            self.stop_search()
            return
        now = time.perf_counter()
        if self.first_seconds is None:
            self.first_seconds = now - self._block_started
        if self._on_progress is not None:
            objective = None if self.feasibility else self.objective_value
            self._on_progress(
                SolveProgress(self._index, self._total, objective, now - self._started)
            )


def _chunks(start: date, end: date) -> list[tuple[date, date]]:
    out = []
    first = start
    while first <= end:
        last = min(end, first + timedelta(days=CHUNK_DAYS - 1))
        out.append((first, last))
        first = last + timedelta(days=1)
    return out


def _params(seconds: float, seed: int, workers: int, *, keep: bool = True) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(seconds, _MIN_CHUNK_SECONDS)
    solver.parameters.num_workers = max(1, workers)
    solver.parameters.random_seed = seed
    # Presolve's dual reductions may remove the greedy hint's solution (it then reports "hint
    # infeasible" and can find nothing in seconds); keeping every feasible solution makes the
    # hint survive and, on these models, even shortens presolve (measured: 1.6 s -> 0.5 s on
    # the 30-resident block).
    solver.parameters.keep_all_feasible_solutions_in_presolve = keep
    return solver


def solve(
    problem: ScheduleProblem,
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    seed: int = 0,
    workers: int = 2,
    on_progress: Callable[[SolveProgress], None] | None = None,
    hint: bool = True,
    cancellation: Cancellation | None = None,
) -> SolveResult:
    """Generate the period's schedule; see the module docstring for the method.

    `hint=False` skips the greedy start (`greedy.py`): CP-SAT alone, for benchmarks
    and tests of the model itself.

    `timeout_seconds` bounds the whole call (all 4-week blocks); each block gets an equal
    share of the time left, so time a block does not need goes to the next ones. Only the
    diagnosis of an infeasible block may add up to 1 s beyond it.

    `on_progress` is called from CP-SAT's search thread for each solution it finds (keep it
    short and thread-safe, e.g. `loop.call_soon_threadsafe`), and from the calling thread
    with `done=True` when a 4-week block is finished. Raises ValueError for a problem the
    rules cannot judge (a resident without PGY level 1-3, an end before the start), and
    SolveCancelled once `cancellation` is cancelled (from another thread).
    """
    cancellation = cancellation or Cancellation()
    started = time.perf_counter()
    prep = prepare(problem)
    chunks = _chunks(prep.start, prep.end)

    def result(
        status: SolveStatus,
        *,
        build_seconds: float,
        explanation: str | None = None,
        assignments: tuple[Assignment, ...] = (),
        calls: tuple[Call, ...] = (),
        objective: float | None = None,
        bound: float | None = None,
        gap: float | None = None,
        first_feasible_seconds: float | None = None,
        chunks: tuple[ChunkStatistics, ...] = (),
    ) -> SolveResult:
        return SolveResult(
            status=status,
            assignments=assignments,
            objective=objective,
            bound=bound,
            gap=gap,
            wall_seconds=time.perf_counter() - started,
            build_seconds=build_seconds,
            first_feasible_seconds=first_feasible_seconds,
            explanation=explanation,
            seed=seed,
            workers=workers,
            timeout_seconds=timeout_seconds,
            chunks=chunks,
            calls=calls,
        )

    explanation = quick_checks(prep)
    if explanation is not None:
        return result(
            "infeasible", build_seconds=time.perf_counter() - started, explanation=explanation
        )

    assignments: list[Assignment] = []
    calls: list[Call] = []
    stats: list[ChunkStatistics] = []
    objective = bound = 0.0
    build_total = 0.0
    first_total: float | None = 0.0
    all_optimal = True
    for index, (first, last) in enumerate(chunks):
        cancellation.check()
        left = timeout_seconds - (time.perf_counter() - started)
        outcome = _solve_chunk(
            prep,
            first,
            last,
            seconds=left / (len(chunks) - index),
            seed=seed,
            workers=workers,
            hint=hint,
            watcher=_Watcher(on_progress, index, len(chunks), started, cancellation),
            cancellation=cancellation,
        )
        stats.append(outcome.stats)
        build_total += outcome.stats.build_seconds
        if outcome.status == "infeasible":
            explanation = _diagnose(
                prep, first, last, seed, workers, started, timeout_seconds, cancellation
            )
            if index > 0:
                explanation += (
                    f" (in the 4-week block from {first}; the blocks before it were "
                    f"scheduled and count for the rolling windows)"
                )
        elif outcome.status == "timeout":
            explanation = (
                f"No schedule found within {timeout_seconds:g} s for the 4-week block from "
                f"{first} to {last}: allow more time"
            )
        if outcome.chosen is None or outcome.objective is None or outcome.bound is None:
            # Never a partial schedule: the blocks solved before this one are dropped too.
            return result(
                outcome.status,
                build_seconds=build_total,
                explanation=explanation,
                chunks=tuple(stats),
            )
        all_optimal &= outcome.status == "optimal"
        objective += outcome.objective
        bound += outcome.bound
        first_seconds = outcome.stats.first_feasible_seconds
        if first_total is not None and first_seconds is not None:
            first_total += first_seconds
        else:
            first_total = None
        assignments.extend(_extract(prep, outcome.blocks, outcome.chosen))
        prep.credit_absences(present_residents(prep, dates(first, last)))
        calls.extend(_extract_calls(prep, first, last, outcome.calls))
        if on_progress is not None:
            on_progress(
                SolveProgress(
                    index,
                    len(chunks),
                    outcome.objective,
                    time.perf_counter() - started,
                    done=True,
                )
            )
    gap = 0.0 if all_optimal else _gap(objective, bound)
    return result(
        "optimal" if all_optimal else "feasible",
        assignments=tuple(assignments),
        calls=tuple(calls),
        objective=objective,
        bound=bound,
        gap=gap,
        build_seconds=build_total,
        first_feasible_seconds=first_total,
        chunks=tuple(stats),
    )


@dataclass(frozen=True, slots=True)
class _ChunkOutcome:
    status: SolveStatus
    stats: ChunkStatistics
    blocks: list[Block]
    chosen: set[Choice] | None = None
    objective: float | None = None
    bound: float | None = None
    calls: set[CallChoice] = field(default_factory=set)


def _solve_chunk(
    prep: Prepared,
    first: date,
    last: date,
    *,
    seconds: float,
    seed: int,
    workers: int,
    hint: bool,
    watcher: _Watcher,
    cancellation: Cancellation,
) -> _ChunkOutcome:
    """One 4-week block: the greedy schedule if it is provably optimal, else CP-SAT started
    from it; without a greedy schedule, CP-SAT finds a first one without the objective."""
    t0 = time.perf_counter()
    watcher.restart(t0)
    start = greedy(prep, first, last) if hint else None
    blocks = block_days(prep, first, last)
    if start is not None and start[2] == 0:
        # The objective is a sum of non-negative excesses, so 0 is a proof of optimality:
        # no model to build, no search to run.
        took = time.perf_counter() - t0
        stats = ChunkStatistics(first, last, "OPTIMAL (greedy)", 0.0, 0.0, 0, took, took, took)
        return _ChunkOutcome("optimal", stats, blocks, start[0], 0.0, 0.0, start[1])
    if start is not None:
        watcher.first_seconds = time.perf_counter() - t0
    chunk = build_chunk(
        prep,
        first,
        last,
        hint=None if start is None else start[0],
        call_hint=None if start is None else start[1],
    )
    build = time.perf_counter() - t0
    deadline = t0 + seconds
    fallback: tuple[set[Choice], set[CallChoice], float] | None = None
    if start is not None:
        fallback = (start[0], start[1], float(start[2]))
    else:
        # CP-SAT's first-solution heuristics find a schedule in ~1 s without the objective
        # and often not in 10 s with it: solve for feasibility first, then optimise from
        # that solution as a complete hint.
        chunk.model.clear_objective()  # type: ignore[no-untyped-call]
        # A model without objective stops at its first solution: all the time may go to it.
        solver = _params(deadline - time.perf_counter(), seed, workers, keep=False)
        watcher.feasibility = True
        code = cancellation.run(solver, chunk.model, watcher)
        watcher.feasibility = False
        if code == cp_model.INFEASIBLE:
            stats = ChunkStatistics(
                first, last, "INFEASIBLE", None, None, chunk.variables, build, None,
                time.perf_counter() - t0,
            )  # fmt: skip
            return _ChunkOutcome("infeasible", stats, blocks)
        if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            stats = ChunkStatistics(
                first, last, solver.status_name(code), None, None, chunk.variables, build,
                None, time.perf_counter() - t0,
            )  # fmt: skip
            return _ChunkOutcome("timeout", stats, blocks)
        found = {key for key, v in chunk.x.items() if solver.boolean_value(v)}
        found_calls = {key for key, v in chunk.c.items() if solver.boolean_value(v)}
        fallback = (
            found,
            found_calls,
            float(_objective_of(prep, blocks, found, found_calls, first, last)),
        )
        chunk.model.minimize(chunk.objective)
        values = solver.response_proto.solution
        for index in range(len(chunk.model.proto.variables)):
            chunk.model.add_hint(chunk.model.get_int_var_from_proto_index(index), values[index])
    solver = _params(deadline - time.perf_counter(), seed, workers)
    code = cancellation.run(solver, chunk.model, watcher)
    assert fallback is not None
    has_solution = code in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    stats = ChunkStatistics(
        first=first,
        last=last,
        status=solver.status_name(code),
        objective=solver.objective_value if has_solution else fallback[2],
        bound=solver.best_objective_bound if has_solution else 0.0,
        variables=chunk.variables,
        build_seconds=build,
        first_feasible_seconds=watcher.first_seconds,
        wall_seconds=time.perf_counter() - t0,
    )
    if code == cp_model.INFEASIBLE:  # only possible without a greedy schedule
        return _ChunkOutcome("infeasible", stats, blocks)
    if not has_solution:
        # Out of time before CP-SAT reported even the hint: the schedule we started from is
        # valid (by construction, or CP-SAT's own), so it is the best found; bound: 0.
        return _ChunkOutcome("feasible", stats, blocks, fallback[0], fallback[2], 0.0, fallback[1])
    chosen = {key for key, v in chunk.x.items() if solver.boolean_value(v)}
    return _ChunkOutcome(
        "optimal" if code == cp_model.OPTIMAL else "feasible",
        stats,
        blocks,
        chosen,
        solver.objective_value,
        solver.best_objective_bound,
        {key for key, v in chunk.c.items() if solver.boolean_value(v)},
    )


def _objective_of(
    prep: Prepared,
    blocks: list[Block],
    chosen: set[Choice],
    calls: set[CallChoice],
    first: date,
    last: date,
) -> int:
    counts, weekends = prep.carried_duty()
    for ri, bi, _ in chosen:
        counts[ri] += 1
        weekends[ri] += blocks[bi].date.weekday() >= 5
    present = present_residents(prep, dates(first, last))
    value = fairness(counts, weekends, present)
    if prep.call is not None:
        totals = [list(prep.call_counts.get(r.id, [0, 0, 0])) for r in prep.residents]
        holidays = prep.call.plan.holidays
        for ri, di in calls:
            night = first + timedelta(days=di)
            totals[ri][0] += 1
            totals[ri][1] += night.weekday() >= 5
            totals[ri][2] += night in holidays
        value += call_fairness(totals, present)
    return value


def _gap(objective: float, bound: float) -> float:
    # CP-SAT's relative gap; an objective of 0 with a bound of 0 is a proof, not a division.
    if math.isclose(objective, bound):
        return 0.0
    return abs(objective - bound) / max(1.0, abs(objective))


def _extract(prep: Prepared, blocks: list[Block], chosen: set[Choice]) -> list[Assignment]:
    """The block's residents, then its faculty, named; both become fixed duty for the next
    4-week block's rolling windows, duty fairness and faculty fairness."""
    per_slot: dict[tuple[int, int], list[int]] = {}
    out: list[Assignment] = []
    for ri, bi, ki in sorted(chosen, key=lambda c: (c[1], c[2], c[0])):
        resident, block, rot = prep.residents[ri], blocks[bi], prep.rotations[ki]
        out.append(Assignment(resident.id, block.id, rot.id, AssignmentRole.PRIMARY))
        per_slot.setdefault((bi, ki), []).append(ri)
        prep.fix(resident.id, block.date, millihours(rot))
        prep.count_duty(resident.id, block.date)
    out.extend(_name_faculty(prep, blocks, per_slot))
    return out


def _extract_calls(prep: Prepared, first: date, last: date, chosen: set[CallChoice]) -> list[Call]:
    """The chunk's calls, which become fixed duty (and call counts) for the next chunk."""
    if prep.call is None:
        return []
    out = []
    for ri, di in sorted(chosen, key=lambda c: (c[1], c[0])):
        call = prep.call.call_on(prep.residents[ri].id, first + timedelta(days=di))
        prep.add_call(call, count=True)
        out.append(call)
    return out


def _name_faculty(
    prep: Prepared, blocks: list[Block], per_slot: dict[tuple[int, int], list[int]]
) -> list[Assignment]:
    """Name the supervising faculty each (block, rotation) needs.

    The model guaranteed that, per block, the faculty needed fit in the faculty present; as
    they are interchangeable, any of them will do, so a greedy pass suffices: on each block
    the least-loaded present faculty (fewest supervising blocks, then fewest weekend blocks)
    take the places. Faculty carry no duty-hour rules in the rule engine.
    """
    out: list[Assignment] = []
    for bi, block in enumerate(blocks):
        needs = []
        for ki, rot in enumerate(prep.rotations):
            here = per_slot.get((bi, ki))
            if not rot.requires_supervision or not here:
                continue
            units = sum(supervision_units(rot, prep.residents[ri]) for ri in here)
            needs.append((rot, -(-units // 4)))
        if not needs:
            continue
        weekend = block.date.weekday() >= 5
        present = sorted(
            (f for f in prep.faculty if not prep.is_absent(f.id, block.date)),
            key=lambda f: (
                prep.faculty_weekends.get(f.id, 0) if weekend else 0,
                prep.faculty_blocks.get(f.id, 0),
                f.name,
                str(f.id),
            ),
        )
        it = iter(present)
        for rot, count in needs:
            for _ in range(count):
                person = next(it)  # enough by the model's faculty headcount constraint
                out.append(Assignment(person.id, block.id, rot.id, AssignmentRole.SUPERVISING))
                prep.faculty_blocks[person.id] = prep.faculty_blocks.get(person.id, 0) + 1
                if weekend:
                    prep.faculty_weekends[person.id] = prep.faculty_weekends.get(person.id, 0) + 1
    return out


def _diagnose(
    prep: Prepared,
    first: date,
    last: date,
    seed: int,
    workers: int,
    started: float,
    timeout_seconds: float,
    cancellation: Cancellation,
) -> str:
    """Solve the block again with slack on coverage minimums and on the faculty headcount;
    the slack that remains names what cannot be met."""
    # No hint and full presolve: on the slack model presolve is what proves the minimum
    # quickly (measured on a week of 8 residents: 0.2 s to optimal without a hint, still
    # open after 10 s with a greedy hint and presolve kept from removing it).
    chunk = build_chunk(prep, first, last, diagnose=True)
    left = timeout_seconds - (time.perf_counter() - started)
    solver = _params(min(_DIAGNOSIS_SECONDS, max(left, 0.5)), seed, workers, keep=False)
    status = cancellation.run(solver, chunk.model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return (
            f"The ACGME limits cannot all be met from {first} to {last} given the duty "
            f"already scheduled before {first}"
        )
    coverage = {k: solver.value(v) for k, v in chunk.coverage_slack.items()}
    faculty = {k: solver.value(v) for k, v in chunk.faculty_slack.items()}
    short = {di: n for di, v in chunk.call_slack.items() if (n := solver.value(v)) > 0}
    if short and not any(coverage.values()) and not any(faculty.values()):
        nights = sorted(short)
        named = ", ".join(
            f"{first + timedelta(days=di)} ({short[di]} missing)" for di in nights[:3]
        )
        more = f" and {len(nights) - 3} more nights" if len(nights) > 3 else ""
        return (
            f"Not enough residents can take in-house call on {named}{more}: each needs "
            f"to be present that day and the next, free the night before and after, and "
            f"within every third night and the duty-hour limits; add residents or lower the "
            f"schedule's call_per_night"
        )
    return explain_slack(prep, chunk.blocks, coverage, faculty, first, last)
