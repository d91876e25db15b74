"""Next month's customers scored with a trained joint propensity model, without labels or training.

Spec: ``protocols/propensity.md``, *Scoring with a trained model*.
"""
