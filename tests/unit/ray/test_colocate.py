"""A colocated rollout on GPUs sleeps after generating and wakes before it takes new weights."""

from alignkit.orchestration.colocate import SleepingRollout


class FakeGroup:
    def __init__(self):
        self.calls = []
        self.role = "rollout"

    def __getattr__(self, name):
        return lambda *args: self.calls.append(name) or name


def test_sleeps_while_training_runs():
    g = FakeGroup()
    rollout = SleepingRollout(g)
    assert rollout.generate([[1]], None) == "generate"
    rollout.load_weights("refs")
    rollout.generate([[1]], None)
    assert g.calls == ["generate", "sleep", "wake_up", "load_weights", "generate", "sleep"]
    assert rollout.role == "rollout"
