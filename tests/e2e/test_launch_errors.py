"""Where a supervised command cannot run its workers: exit code 2 and one clear line, before any model
is loaded or Ray started."""

import pytest
from helpers import run_cli


def err_line(capsys):
    return capsys.readouterr().err.strip().splitlines()[-1]


FLAGS = ["--model.path", "m", "--data.train_files", "d.jsonl"]  # never read: the launch fails first


@pytest.mark.parametrize("backend", ["fsdp2", "deepspeed"])
def test_sharded_backend_needs_ray_or_torchrun(capsys, backend):
    assert run_cli("dpo", *FLAGS, "--policy.backend", backend, "--policy.num_workers", 2) == 2
    assert err_line(capsys) == (
        f"alignkit dpo: error: --policy.backend {backend} runs one process per worker in a torch.distributed "
        "process group: use --executor ray (or launch the processes with torchrun), or --policy.backend torch"
    )


def test_several_workers_need_ray_and_a_sharded_backend(capsys):
    assert run_cli("sft", *FLAGS, "--policy.num_workers", 2) == 2
    assert err_line(capsys) == ("alignkit sft: error: --policy.num_workers 2 needs --executor ray and a sharded "
                                "backend (--policy.backend fsdp2 or deepspeed)")
    assert run_cli("rm", *FLAGS, "--executor", "ray", "--policy.num_workers", 2) == 2
    assert err_line(capsys) == ("alignkit rm: error: --policy.num_workers 2 needs a sharded backend "
                                "(--policy.backend fsdp2 or deepspeed): --policy.backend torch trains one copy")
    assert run_cli("kto", *FLAGS, "--executor", "slurm") == 2
    assert err_line(capsys) == "alignkit kto: error: --executor must be one of local, ray, got 'slurm'"
