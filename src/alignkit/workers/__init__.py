"""Thin role classes: each holds a model (and a backend or engine) and exposes a few methods with
typed inputs and outputs. The controller calls them through an executor (orchestration/)."""
