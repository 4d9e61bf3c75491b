"""Where each worker runs: one placement group for the run, and a seat (a bundle and a share of it)
for every worker of every role.

- colocated: bundle i holds worker i of every role; roles share it and take turns (hybrid engine).
- separate: every worker gets a bundle of its own, so roles run at the same time.
- explicit (`--ray.bundles`, e.g. from `alignkit plan`): role -> bundle indices; the role's workers
  are spread evenly over its bundles, and roles that name the same bundle share it.

Workers on one bundle split its resources evenly (fractional CPUs / GPUs are only Ray's
bookkeeping: they let several actors sit on one device). The layout is pure; `reserve` asks Ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from alignkit.config.schema import RayConfig
from alignkit.errors import AlignkitError, ConfigError
from alignkit.planner.graph import ROLES

PLACEMENTS = ("colocated", "separate")


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


def role_bundles(workers: dict[str, int], cfg: RayConfig) -> dict[str, list[int]]:
    """Bundle indices each role may use (before spreading its workers over them)."""
    if cfg.bundles:
        unknown = sorted(set(cfg.bundles) - set(ROLES))
        if unknown:
            raise ConfigError(f"--ray.bundles: unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}")
        missing = [r for r in workers if not cfg.bundles.get(r)]
        if missing:
            raise ConfigError(f"--ray.bundles gives no bundle to {', '.join(missing)} "
                              f"(it maps {', '.join(sorted(cfg.bundles)) or 'nothing'})")
        return {r: list(cfg.bundles[r]) for r in workers}
    if cfg.placement == "colocated":
        return {r: list(range(n)) for r, n in workers.items()}
    if cfg.placement == "separate":
        out, start = {}, 0
        for r, n in workers.items():
            out[r], start = list(range(start, start + n)), start + n
        return out
    raise ConfigError(f"--ray.placement must be one of {', '.join(PLACEMENTS)}, got '{cfg.placement}'")


def _share(total: float, k: int) -> float:
    # Ray counts resources in units of 1e-4: round down so that k shares never exceed the bundle.
    return math.floor(total / k * 1e4) / 1e4


def plan_layout(workers: dict[str, int], cfg: RayConfig) -> Layout:
    """Bundles and seats for `workers` (role -> number of workers)."""
    if cfg.cpus_per_worker <= 0 and cfg.gpus_per_worker <= 0:
        raise ConfigError("--ray.cpus_per_worker and --ray.gpus_per_worker cannot both be 0")
    allowed = role_bundles(workers, cfg)
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
