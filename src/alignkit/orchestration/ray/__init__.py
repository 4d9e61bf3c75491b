"""The Ray executor (`--executor ray`): roles as groups of Ray actors; see docs/distributed.md.

executor.py creates the groups, placement.py places them, group.py and scatter.py split calls over
workers as each worker method declares (dispatch.py: the pure splitting and gathering), sync.py and
sync_gpu.py move weights, async_rollout.py overlaps generation with training, host.py is the actor."""
