"""Helpers that more than one test file uses (imported by them and by conftest.py)."""
