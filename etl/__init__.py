"""Dopplersky Workers: daily Bluesky account analytics into PostgreSQL."""

__version__ = "0.1.0"
