"""Drill 4 mutants (being written)."""

MUTANTS = []
