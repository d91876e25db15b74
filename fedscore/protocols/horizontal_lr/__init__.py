"""Horizontal logistic regression for N parties over HE-aggregated updates: ``protocols/scoring_horizontal.md``."""
