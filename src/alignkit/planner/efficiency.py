"""Efficiency factors: how far real kernels fall short of the datasheet.

The cost model computes ideal times from FLOPs, bytes and peak rates, then divides by these
factors. Defaults are typical of well-tuned bf16 training and decoding on H100/A100-class GPUs
(large matmuls reach about half of peak in end-to-end training; flash attention less; decode
reads reach about 70% of HBM bandwidth; NCCL collectives about 75% of link bandwidth).
``alignkit plan --calibrate`` measures them on the machine at hand (see calibrate.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from alignkit.config.json_file import read_json
from alignkit.errors import ConfigError

CALIBRATION_VERSION = 1


@dataclass(frozen=True)
class Efficiency:
    compute: float = 0.5  # achieved fraction of peak FLOP/s in matmuls (prefill, training)
    attention: float = 0.4  # achieved fraction of peak FLOP/s in attention kernels
    memory: float = 0.7  # achieved fraction of memory bandwidth in decode (weights + KV reads)
    comm: float = 0.75  # achieved fraction of link bandwidth in collectives
    overhead_s: float = 1e-3  # fixed seconds per forward pass of a stage (launches, scheduling)
    device: str = ""  # the device kind these were fitted on; "" for the defaults
    source: str = "default"  # "default" or "calibrated on <host> at <time>"

    def __post_init__(self) -> None:
        for name in ("compute", "attention", "memory", "comm"):
            v = getattr(self, name)
            if not 0 < v <= 1.5:  # > 1 tolerated: a table's "peak" can be lower than reality
                raise ConfigError(f"efficiency {name} must be in (0, 1.5], got {v}")
        if self.overhead_s < 0:
            raise ConfigError(f"efficiency overhead_s must be >= 0, got {self.overhead_s}")


def save_efficiency(eff: Efficiency, path: str | Path, extra: dict | None = None) -> None:
    data = {"version": CALIBRATION_VERSION, **asdict(eff)}
    if extra:
        data.update(extra)
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


def load_efficiency(path: str | Path) -> Efficiency:
    """Read a calibration file; extra keys (the raw measurements) are ignored."""
    p = Path(path)
    data = read_json(p, "calibration file")
    if not isinstance(data, dict) or data.get("version") != CALIBRATION_VERSION:
        raise ConfigError(
            f"calibration file {str(p)!r} must be a JSON object with version {CALIBRATION_VERSION}"
        )
    names = {f.name for f in fields(Efficiency)}
    missing = sorted(n for n in ("compute", "attention", "memory", "overhead_s") if n not in data)
    if missing:
        raise ConfigError(f"calibration file {str(p)!r} is missing {missing}")
    try:
        return Efficiency(**{k: v for k, v in data.items() if k in names})
    except TypeError as exc:
        raise ConfigError(f"calibration file {str(p)!r}: {exc}") from exc
