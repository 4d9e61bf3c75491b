"""The execution planner: where each model call of an RLHF iteration runs, and how.

An iteration is a dataflow graph of calls (graph.py); each call can run on a device mesh
(strategy.py) with a parallel strategy, at a cost from first principles (cost.py, models.py,
hardware.py, efficiency.py). A plan picks one (mesh, strategy) per call (problem.py); the
simulator schedules it (simulate.py); the search finds a fast feasible plan (search.py) and is
compared with heuristic placements (baselines.py). plan_io.py writes the placement the Ray
executor takes (its schema: orchestration/plan_file.py); calibrate.py fits the cost model to the machine at hand; command.py is
``alignkit plan``. See docs/planner.md.
"""
