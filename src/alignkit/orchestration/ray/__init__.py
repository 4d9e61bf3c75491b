"""The Ray executor (`--executor ray`): roles as groups of Ray actors; see docs/distributed.md.

executor.py creates the groups, placement.py places them, group.py and plans.py split calls over
workers (dispatch.py: the pure splitting and gathering), sync.py moves weights, async_rollout.py
overlaps generation with training, host.py is the actor, colocate.py the sleeping rollout."""
