"""`alignkit rl` across a two-node Ray cluster (two raylets on this machine): the role -> bundles
mapping puts the policy on one node and the rollout and reward on the other, and the run joins the
cluster by its address, as `--ray.address auto` joins a real one."""

import math
import re

import pytest
from helpers import rl_flags, run_cli
from ray.cluster_utils import Cluster

from alignkit.metrics.logger import read_metrics


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    c.add_node(num_cpus=2)
    c.wait_for_nodes()
    yield c
    c.shutdown()


def test_rl_across_two_nodes(cluster, tiny_dir, tmp_path, caplog):
    caplog.set_level("INFO", logger="alignkit")
    # two bundles of 2 CPUs: each fills one node, so bundle 0 and bundle 1 are on different nodes
    flags = rl_flags(tiny_dir, tmp_path, 2, executor="ray", **{
        "ray.address": cluster.address, "ray.cpus_per_worker": 2, "algo.kl_coef": 0,
        "ray.bundles": '{"policy": [0], "rollout": [1], "reward": [1]}'})
    assert run_cli("rl", "--preset", "grpo", *flags) == 0
    placed = (re.fullmatch(r"(\w+): 1 worker\(s\) on bundles \[\d\], nodes \['(\w+)'\]", r.getMessage())
              for r in caplog.records)
    nodes = dict(m.groups() for m in placed if m)
    assert set(nodes) == {"policy", "rollout", "reward"}, caplog.text
    assert nodes["policy"] != nodes["rollout"] == nodes["reward"]
    rows = read_metrics(tmp_path / "rl")
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    assert rows[-1]["timing/sync"] > 0
