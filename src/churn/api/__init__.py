"""The prediction API: a Flask app factory with one blueprint per concern, served by Waitress."""

from churn.api.app import create_app

__all__ = ["create_app"]
