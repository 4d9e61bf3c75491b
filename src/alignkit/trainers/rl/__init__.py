"""Online RL: one controller for every algorithm (online_rl.py), the batch it trains on (experience.py),
its per-step metrics and config checks, and best-of-n rejection sampling."""
