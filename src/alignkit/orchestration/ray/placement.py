"""Where each worker runs: one placement group for the run, and a seat (a bundle and a share of it)
for every worker of every role.

- colocated: bundle i holds worker i of every role; roles share it and take turns (hybrid engine).
- separate: every worker gets a bundle of its own, so roles run at the same time.
- explicit (`--ray.bundles`, or `--ray.plan plan.json` from `alignkit plan --output`): role -> bundle
  indices; the role's workers are spread evenly over its bundles, and roles that name the same
  bundle share it. A role without a model (a rule reward) may be left out: it needs no device of
  its own, so it joins the rollout's first bundle, where the samples it scores are made.

Workers on one bundle split its resources evenly (fractional CPUs / GPUs are only Ray's
bookkeeping: they let several actors sit on one device). The layout is pure; `reserve` asks Ray.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection
from dataclasses import dataclass

from alignkit.config.schema import RayConfig
from alignkit.errors import AlignkitError, ConfigError
from alignkit.orchestration.plan_file import plan_bundles
from alignkit.orchestration.roles import ROLE_NAMES

log = logging.getLogger("alignkit")

@dataclass(frozen=True)
class Seat:
    """One worker's place: its bundle and the resources it takes from it."""

    bundle: int
    cpus: float
    gpus: float


@dataclass(frozen=True)
class Layout:
    bundles: list[dict[str, float]]  # one resource dict per bundle of the placement group
    seats: dict[str, list[Seat]]  # role -> one seat per worker


def role_bundles(workers: dict[str, int], cfg: RayConfig, light: Collection[str] = ()) -> dict[str, list[int]]:
    """Bundle indices each role may use (before spreading its workers over them). `light`: roles
    without a model of their own, which an explicit mapping may leave out."""
    if cfg.plan and cfg.bundles:
        raise ConfigError("--ray.plan and --ray.bundles both map roles to bundles: give one of them")
    if cfg.plan:
        try:
            mapping = plan_bundles(cfg.plan)
        except ConfigError as exc:
            raise ConfigError(f"--ray.plan: {exc}") from None
        source = f"--ray.plan {cfg.plan}"
        allowed = _mapped(workers, mapping, source, light, "; make the plan for this run's roles "
                          "(alignkit plan --algo, --critic, --ref, --reward) or change the run")
        for r, n in workers.items():
            if r in mapping and len(mapping[r]) != n:
                # The plan's strategy for the role assumes one worker per device: say so, but run.
                log.warning("%s gives %s %d device(s) but the run has %d %s worker(s)", source, r,
                            len(mapping[r]), n, r)
        return allowed
    if cfg.bundles:
        return _mapped(workers, cfg.bundles, "--ray.bundles", light, "")
    if cfg.placement == "colocated":
        return {r: list(range(n)) for r, n in workers.items()}
    out, start = {}, 0  # separate
    for r, n in workers.items():
        out[r], start = list(range(start, start + n)), start + n
    return out


def _mapped(
    workers: dict[str, int], mapping: dict[str, list[int]], source: str, light: Collection[str], hint: str
) -> dict[str, list[int]]:
    """`mapping` restricted to the run's roles; a light role left out joins the rollout's first bundle."""
    unknown = sorted(set(mapping) - set(ROLE_NAMES))
    if unknown:
        raise ConfigError(f"{source}: unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLE_NAMES)}")
    missing = [r for r in workers if not mapping.get(r) and (r not in light or not mapping.get("rollout"))]
    if missing:
        raise ConfigError(f"{source} gives no bundle to {', '.join(missing)} "
                          f"(it maps {', '.join(sorted(mapping)) or 'nothing'}){hint}")
    return {r: list(mapping[r]) if mapping.get(r) else list(mapping["rollout"][:1]) for r in workers}


def _share(total: float, k: int) -> float:
    # Ray counts resources in units of 1e-4: round down so that k shares never exceed the bundle.
    return math.floor(total / k * 1e4) / 1e4


def plan_layout(workers: dict[str, int], cfg: RayConfig, light: Collection[str] = ()) -> Layout:
    """Bundles and seats for `workers` (role -> number of workers); `light` as in role_bundles."""
    if cfg.cpus_per_worker <= 0 and cfg.gpus_per_worker <= 0:
        raise ConfigError("--ray.cpus_per_worker and --ray.gpus_per_worker cannot both be 0")
    allowed = role_bundles(workers, cfg, light)
    if min(min(b) for b in allowed.values()) < 0:
        raise ConfigError("--ray.bundles: bundle indices must be >= 0")
    chosen = {r: [allowed[r][i * len(allowed[r]) // n] for i in range(n)] for r, n in workers.items()}
    n_bundles = 1 + max(max(b) for b in allowed.values())
    occupancy = [0] * n_bundles
    for bs in chosen.values():
        for b in bs:
            occupancy[b] += 1
    seats = {r: [Seat(b, _share(cfg.cpus_per_worker, occupancy[b]), _share(cfg.gpus_per_worker, occupancy[b]))
                 for b in bs] for r, bs in chosen.items()}
    bundle = {"CPU": cfg.cpus_per_worker} | ({"GPU": cfg.gpus_per_worker} if cfg.gpus_per_worker > 0 else {})
    return Layout([dict(bundle) for _ in range(n_bundles)], seats)


def reserve(layout: Layout, timeout_s: float):
    """The placement group of `layout`, ready; an error says what could not be placed."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    pg = placement_group(layout.bundles, strategy="PACK")
    ready, _ = ray.wait([pg.ready()], timeout=timeout_s)
    if not ready:
        remove_placement_group(pg)
        raise AlignkitError(
            f"could not reserve {len(layout.bundles)} bundles of {layout.bundles[0]} within {timeout_s:g}s "
            f"(the cluster has {ray.cluster_resources()}): lower --ray.cpus_per_worker / --ray.gpus_per_worker, "
            "use --ray.placement colocated, or add nodes"
        )
    return pg
