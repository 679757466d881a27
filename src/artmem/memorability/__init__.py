"""Memorability science: memory-game scoring and human consistency (`memgame`), memorability maps
(`maps`), and training/evaluating memorability predictors (`train`, `heads`)."""
