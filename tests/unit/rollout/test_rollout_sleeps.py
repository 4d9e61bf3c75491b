"""A rollout that shares its device with the trainers (colocated on a GPU) gives its memory back after
generating and takes it again before new weights arrive; one that does not never sleeps."""

from alignkit.workers.rollout import RolloutWorker


class Engine:
    def __init__(self):
        self.calls = []

    def generate(self, prompts, params):
        self.calls.append("generate")
        return ["gen"]

    def __getattr__(self, name):
        return lambda *a: self.calls.append(name)


def _worker(sleeps: bool) -> RolloutWorker:
    w = RolloutWorker.__new__(RolloutWorker)  # the engine is a stand-in: nothing to build
    w.engine, w.sleeps = Engine(), sleeps
    return w


def test_sleeps_while_training_runs():
    w = _worker(sleeps=True)
    assert w.generate([[1]], None) == ["gen"]
    w.load_weights([])
    w.generate([[1]], None)
    assert w.engine.calls == ["generate", "sleep", "wake_up", "load_weights", "generate", "sleep"]


def test_a_rollout_with_its_own_device_stays_awake():
    w = _worker(sleeps=False)
    w.generate([[1]], None)
    w.load_weights([])
    assert w.engine.calls == ["generate", "wake_up", "load_weights"]  # waking an awake engine is a no-op
