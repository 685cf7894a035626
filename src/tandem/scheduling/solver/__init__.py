"""Schedule generation with OR-Tools CP-SAT: `from tandem.scheduling import solver`.

`solve(problem)` returns a `SolveResult`: the period's assignments (residents as `primary`,
faculty as `supervising`) when a schedule exists, else why not. How (docs/decisions.md):

- ACGME rules are hard constraints, with the rule engine's arithmetic (`model.py`);
- the period is solved one 4-week block at a time, each carrying the 27 days before it (the
  history, then the blocks just solved) and the settled duty in the 27 days after the
  period, so every rolling window is right;
- faculty are interchangeable, so the model only counts them per block and rotation; they
  are named afterwards (`search._name_faculty`), which is instant and spreads duty fairly;
- fairness is count-based: the spread of duty blocks and weekend blocks among residents;
- a greedy pass (`greedy.py`) gives CP-SAT a complete starting schedule, and when
  that schedule's objective is already 0 (the lower bound) CP-SAT is not needed at all;
- infeasible inputs are caught by counting checks first (`checks.py`), then by CP-SAT
  with a diagnosis pass (slack on coverage minimums and on the faculty headcount) that names
  the requirement that cannot be met. A partial schedule is never returned.

The package: `model.py` (the problem indexed once, the CP-SAT model of one 4-week block),
`greedy.py` (the starting schedule), `checks.py` (counting checks, explanations) and
`search.py` (`solve`, its cancellation and its results).
"""

from tandem.scheduling.solver.search import (
    CHUNK_DAYS,
    DEFAULT_TIMEOUT_SECONDS,
    Cancellation,
    ChunkStatistics,
    SolveCancelled,
    SolveProgress,
    SolveResult,
    SolveStatus,
    solve,
)

__all__ = [
    "CHUNK_DAYS",
    "DEFAULT_TIMEOUT_SECONDS",
    "Cancellation",
    "ChunkStatistics",
    "SolveCancelled",
    "SolveProgress",
    "SolveResult",
    "SolveStatus",
    "solve",
]
