"""Device kinds and the cluster shape the planner plans for.

A device kind is the handful of numbers the cost model needs: peak dense bf16 FLOP/s, memory
size, memory (HBM) bandwidth, and the per-device bandwidth of the intra-node link (NVLink) and of
the inter-node network. The built-in table holds vendor datasheet numbers; a YAML file can add
kinds or override them (``--device-table``). Units in YAML are human sized (TFLOP/s, GiB, GB/s)
because PyYAML reads ``989e12`` as a string, and people copy these numbers from datasheets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from alignkit.errors import ConfigError

GIB = 1024**3


@dataclass(frozen=True)
class DeviceKind:
    """One accelerator (or CPU socket) type. All rates are per device."""

    name: str
    peak_flops: float  # dense bf16 FLOP/s (fp32 for "cpu")
    memory_bytes: float  # device memory
    hbm_bandwidth: float  # bytes/s, memory bandwidth: what decode is bound by
    intra_node_bandwidth: float  # bytes/s one direction, per device, to peers in its node (NVLink)
    inter_node_bandwidth: float  # bytes/s one direction, per device, to other nodes (IB / RoCE NIC)
    intra_node_latency: float = 8e-6  # seconds per collective hop inside a node
    inter_node_latency: float = 25e-6  # seconds per collective hop across nodes


# Datasheet numbers (dense, no sparsity). NVLink figures are one direction per GPU (H100 NVLink4:
# 900 GB/s bidirectional); network figures assume one NIC per GPU (400 Gb/s on H100/H200 nodes,
# 200 Gb/s on A100 nodes), as in DGX-style machines.
_BUILTIN: dict[str, DeviceKind] = {
    "h100": DeviceKind("h100", 989e12, 80 * GIB, 3.35e12, 450e9, 50e9),
    "h200": DeviceKind("h200", 989e12, 141 * GIB, 4.8e12, 450e9, 50e9),
    "a100-80g": DeviceKind("a100-80g", 312e12, 80 * GIB, 2.039e12, 300e9, 25e9),
    "a100-40g": DeviceKind("a100-40g", 312e12, 40 * GIB, 1.555e12, 300e9, 25e9),
    "l40s": DeviceKind("l40s", 362e12, 48 * GIB, 864e9, 32e9, 25e9),
    # A server CPU socket as "a device": fp32 peak of a 32-core AVX-512 part, DDR5 bandwidth.
    # Only the calibration (and tests) use it; the efficiency factors absorb how far a given box is.
    "cpu": DeviceKind("cpu", 2e12, 64 * GIB, 200e9, 50e9, 12.5e9, 2e-5, 5e-5),
}

# YAML field -> (DeviceKind field, multiplier to SI units). Latencies are optional.
_YAML_FIELDS: dict[str, tuple[str, float]] = {
    "peak_tflops": ("peak_flops", 1e12),
    "memory_gib": ("memory_bytes", GIB),
    "hbm_gb_s": ("hbm_bandwidth", 1e9),
    "intra_node_gb_s": ("intra_node_bandwidth", 1e9),
    "inter_node_gb_s": ("inter_node_bandwidth", 1e9),
}
_YAML_OPTIONAL: dict[str, tuple[str, float]] = {
    "intra_node_latency_us": ("intra_node_latency", 1e-6),
    "inter_node_latency_us": ("inter_node_latency", 1e-6),
}


def builtin_devices() -> dict[str, DeviceKind]:
    """A copy of the built-in device table."""
    return dict(_BUILTIN)


def load_device_table(path: str | Path | None) -> dict[str, DeviceKind]:
    """The built-in table, extended (or overridden) by a YAML file of the form::

    my-gpu:
      peak_tflops: 500
      memory_gib: 96
      hbm_gb_s: 4000
      intra_node_gb_s: 450
      inter_node_gb_s: 50
      # optional: intra_node_latency_us, inter_node_latency_us
    """
    table = builtin_devices()
    if path is None:
        return table
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"device table {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"device table {str(p)!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"device table {str(p)!r} must map device names to their fields")
    for name, fields in data.items():
        table[str(name).lower()] = _device_from_yaml(str(name).lower(), fields, p)
    return table


def _device_from_yaml(name: str, fields: object, path: Path) -> DeviceKind:
    if not isinstance(fields, dict):
        raise ConfigError(f"device table {str(path)!r}: entry {name!r} must be a mapping of fields")
    known = set(_YAML_FIELDS) | set(_YAML_OPTIONAL)
    unknown = sorted(set(map(str, fields)) - known)
    if unknown:
        raise ConfigError(
            f"device table {str(path)!r}: entry {name!r} has unknown field(s) {unknown}; "
            f"valid fields: {sorted(known)}"
        )
    missing = [k for k in _YAML_FIELDS if k not in fields]
    if missing:
        raise ConfigError(
            f"device table {str(path)!r}: entry {name!r} is missing field(s) {missing}; "
            f"every entry needs {list(_YAML_FIELDS)}"
        )
    kwargs: dict[str, float] = {}
    for key, (attr, scale) in {**_YAML_FIELDS, **_YAML_OPTIONAL}.items():
        if key not in fields:
            continue
        try:
            value = float(fields[key])
        except (TypeError, ValueError):
            raise ConfigError(
                f"device table {str(path)!r}: {name}.{key} must be a number, got {fields[key]!r}"
            ) from None
        if not value > 0:
            raise ConfigError(f"device table {str(path)!r}: {name}.{key} must be > 0, got {value}")
        kwargs[attr] = value * scale
    return DeviceKind(name=name, **kwargs)


def get_device(name: str, table: dict[str, DeviceKind] | None = None) -> DeviceKind:
    table = builtin_devices() if table is None else table
    key = name.lower()
    if key not in table:
        raise ConfigError(f"unknown device kind {name!r}; valid choices: {sorted(table)}")
    return table[key]


@dataclass(frozen=True)
class ClusterSpec:
    """``nodes`` identical nodes of ``devices_per_node`` devices. Device ``i`` is local device
    ``i % devices_per_node`` of node ``i // devices_per_node`` (node-major numbering, which is
    also the bundle order of the Ray placement group the executor builds)."""

    nodes: int
    devices_per_node: int
    device: DeviceKind

    @property
    def n_devices(self) -> int:
        return self.nodes * self.devices_per_node

    def describe(self) -> str:
        return f"{self.nodes}x{self.devices_per_node} {self.device.name} ({self.n_devices} devices)"


_DEVICES_RE = re.compile(r"^\s*(\d+)\s*[xX*]\s*(\d+)\s*$")


def parse_devices(text: str) -> tuple[int, int]:
    """``"8x8"`` -> (8 nodes, 8 devices per node); a bare ``"4"`` means one node of 4."""
    text = str(text)
    m = _DEVICES_RE.match(text)
    if m:
        nodes, per_node = int(m.group(1)), int(m.group(2))
    elif text.strip().isdigit():
        nodes, per_node = 1, int(text.strip())
    else:
        raise ConfigError(
            f"bad --devices {text!r}: expected NODESxDEVICES_PER_NODE such as '8x8' (8 nodes of 8) "
            "or a single number for one node"
        )
    if nodes < 1 or per_node < 1:
        raise ConfigError(f"bad --devices {text!r}: node and device counts must be >= 1")
    if per_node & (per_node - 1):
        raise ConfigError(
            f"bad --devices {text!r}: devices per node must be a power of two (1, 2, 4, 8, 16), "
            f"got {per_node}"
        )
    return nodes, per_node


def make_cluster(devices: str, device: str, table: dict[str, DeviceKind] | None = None) -> ClusterSpec:
    nodes, per_node = parse_devices(devices)
    return ClusterSpec(nodes, per_node, get_device(device, table))
