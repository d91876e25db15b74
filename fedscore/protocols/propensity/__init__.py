"""Joint propensity scoring: vertical logistic regression on brand and media features, ``protocols/propensity.md``."""
