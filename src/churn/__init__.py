"""Churn prediction: a DVC-trained scikit-learn classifier served by a Flask/Waitress API."""

__version__ = "0.1.0"
