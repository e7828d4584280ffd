"""Drill 2 mutants (being written)."""

MUTANTS = []
