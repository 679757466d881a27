"""Figures and the self-contained HTML report of a memorability study (Cetinic et al. 2019)."""
