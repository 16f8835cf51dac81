"""Shared pytest configuration. The web app's fixtures (all named `web_*`) live in tests/web_fixtures.py."""

pytest_plugins = ["tests.web_fixtures"]
