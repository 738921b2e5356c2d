"""The engine's own scheduled work, run as flows like any process."""
