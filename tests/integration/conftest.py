"""Integration tests use the session cluster of tests/conftest.py."""
