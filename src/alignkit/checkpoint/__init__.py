"""Atomic checkpoints with exact resume (state.py) and Hugging Face export (export.py)."""
