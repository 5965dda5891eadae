"""Window tests: offscreen Qt (set in tests/conftest.py), isolated preferences, no leaked
threads."""

from qt_guard import isolated_settings, no_thread_left_running  # noqa: F401
