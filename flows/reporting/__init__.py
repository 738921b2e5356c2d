"""Reporting: what the director reads about every other process."""
