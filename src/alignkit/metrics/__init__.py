"""Metrics sinks (logger.py) and the progress display (progress.py)."""
