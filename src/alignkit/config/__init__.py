"""Typed configs (schema.py), parsing (parse.py) and value checks (validate.py)."""
