"""A resume that changes the learning rate or the schedule's length (allowed by --resume_allow) uses the
new values from the first resumed step; an unchanged config gets the saved values bit for bit."""

import torch

from alignkit.backends.torch_local import OptimConfig, TorchBackend


def backend(lr: float, total: int) -> TorchBackend:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    return TorchBackend(model, OptimConfig(lr, total, 2, 0.1, 0.01, (0.9, 0.95), 1e-8, 1.0), torch.device("cpu"))


def trained(steps: int) -> TorchBackend:
    b = backend(1e-2, 10)
    for _ in range(steps):
        b.forward_backward(torch.ones(4, 3), lambda m, x: (m(x).pow(2).mean(), {}))
        b.step()
    return b


def test_unchanged_config_resumes_the_saved_lr_exactly():
    saved = trained(3)
    resumed = backend(1e-2, 10)
    resumed.load_state_dict(saved.state_dict())
    assert resumed.scheduler.get_last_lr() == saved.scheduler.get_last_lr()
    assert [g["lr"] for g in resumed.optimizer.param_groups] == [g["lr"] for g in saved.optimizer.param_groups]


def test_new_lr_and_length_take_effect_at_the_restored_step():
    saved = trained(3)
    resumed = backend(5e-3, 20)  # --train.lr 5e-3 --train.max_steps 20
    resumed.load_state_dict(saved.state_dict())
    at_step_3 = resumed.scheduler.lr_lambdas[0](3)  # the new cosine schedule (2 warm-up steps of 20) at step 3
    assert resumed.scheduler.get_last_lr() == [5e-3 * at_step_3] * 2
    assert [g["lr"] for g in resumed.optimizer.param_groups] == [5e-3 * at_step_3] * 2
    assert [g["weight_decay"] for g in resumed.optimizer.param_groups] == [0.01, 0.0]
    assert resumed.scheduler.last_epoch == 3
