"""What keeps a run honest with its surroundings: one run per directory (lock.py), a checkpoint and a
clean exit on SIGTERM/SIGINT (signals.py), and disk errors reported as one line naming the path (disk.py)."""
