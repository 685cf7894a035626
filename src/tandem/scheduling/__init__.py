"""Scheduling: people, blocks, rotations, schedules, assignments, ACGME rules, solver, swaps."""
