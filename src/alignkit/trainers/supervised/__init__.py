"""Supervised training (sft, rm, dpo, kto): one loop (loop.py) over an Objective per command, run in
this process, data parallel on Ray or under torchrun (launch.py)."""
