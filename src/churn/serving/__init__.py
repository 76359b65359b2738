"""Internals of the serving core: artifact checks, compiled features and models."""
