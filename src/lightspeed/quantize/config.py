"""Precision configuration: a default, per-input types and per-layer overrides.

File format (YAML or JSON)::

    precision: auto            # or a type such as ap_fixed<16,6>
    auto: {weight_bits: 8, frac_bits: 10}   # optional AutoOptions
    inputs: {x: ap_fixed<16,6>}
    layers:
      fc1: {weight: ap_fixed<8,2>, accum: ap_fixed<24,10>, result: ap_fixed<16,6,RND,SAT>}
      sig: {table: ap_ufixed<18,0,RND,SAT>, table_size: 2048, table_range: [-8, 8]}
      fc2: {reuse: 4}          # firmware: reuse factor of this dense layer (II = 4)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lightspeed.errors import ConfigError, FixedTypeError
from lightspeed.fixed import FixedType, parse_type
from lightspeed.ir.graph import Graph
from lightspeed.ops import AutoOptions, get_op

# layer keys that set node attributes rather than types
TABLE_ATTRS = (
    "table_size",
    "table_range",
    "table_layout",
    "exp_table_size",
    "exp_range",
    "inv_table_size",
)
# firmware attributes carried by the node (lightspeed.firmware.reuse): {fc1: {reuse: 4}}
FIRMWARE_ATTRS = ("reuse",)


# precision modes: one type everywhere, types from calibration, the source model's own
# types, or a mixed-precision search (run by lightspeed.search above this layer)
MODES = ("auto", "fixed", "trained", "search")


@dataclass
class PrecisionConfig:
    """The typing policy, parsed once from ``precision=`` and the config file."""

    mode: str = "auto"
    default: FixedType | None = None  # the one type of mode "fixed"
    inputs: dict[str, FixedType] = field(default_factory=dict)
    layers: dict[str, dict[str, FixedType]] = field(default_factory=dict)
    attrs: dict[str, dict[str, Any]] = field(default_factory=dict)
    auto: AutoOptions = field(default_factory=AutoOptions)

    @property
    def is_auto(self) -> bool:
        return self.mode == "auto"

    @property
    def label(self) -> str:
        """What reports show as the precision: the mode, or the fixed type."""
        return str(self.default) if self.mode == "fixed" else self.mode


def parse_mode(precision: str | FixedType | None) -> tuple[str, FixedType | None]:
    """``precision=`` as (mode, fixed type): 'auto', 'trained', 'search' or a type string."""
    if precision is None or precision == "auto":
        return "auto", None
    if isinstance(precision, str) and precision in MODES:
        if precision == "fixed":
            raise ConfigError("precision='fixed' needs the type itself, e.g. 'ap_fixed<16,6>'")
        return precision, None
    return "fixed", config_type(precision, "precision")


def config_type(value: Any, where: str) -> FixedType:
    """A type from user configuration; a bad one is a ConfigError saying where it came from."""
    try:
        return parse_type(value)
    except FixedTypeError as exc:
        hint = ""
        if isinstance(value, str) and "<" in value and ">" not in value:
            hint = " (in a YAML flow mapping {...} quote types that contain commas)"
        raise ConfigError(f"{where}: {exc}{hint}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    text = p.read_text()
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # parser errors of either format
        raise ConfigError(f"config file {p} does not parse: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping with keys precision/inputs/layers")
    return data


def make_config(
    precision: str | FixedType | None = "auto",
    config: dict[str, Any] | str | Path | None = None,
    options: AutoOptions | None = None,
) -> PrecisionConfig:
    """Combine the ``precision`` argument with a config mapping or file (the file wins)."""
    data: dict[str, Any] = {}
    if isinstance(config, (str, Path)):
        data = read_config_file(config)
    elif isinstance(config, dict):
        data = dict(config)
    unknown = set(data) - {"precision", "inputs", "layers", "auto"}
    if unknown:
        raise ConfigError(
            f"unknown config keys {sorted(unknown)}; allowed: precision, auto, inputs, layers"
        )
    mode, default = parse_mode(data.get("precision", precision))
    auto = options or AutoOptions()
    if "auto" in data:
        names = {f.name for f in fields(AutoOptions)}
        bad = set(data["auto"]) - names
        if bad:
            raise ConfigError(f"unknown auto options {sorted(bad)}; allowed: {sorted(names)}")
        auto = AutoOptions(**{**auto.__dict__, **data["auto"]})
    cfg = PrecisionConfig(mode=mode, default=default, auto=auto)
    for name, t in (data.get("inputs") or {}).items():
        cfg.inputs[name] = config_type(t, f"inputs.{name}")
    for layer, roles in (data.get("layers") or {}).items():
        if not isinstance(roles, dict):
            raise ConfigError(
                f"layers.{layer} must map roles to types, e.g. {{result: ap_fixed<16,6>}}"
            )
        for role, value in roles.items():
            if role == "reuse" and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(
                    f"layers.{layer}.reuse must be a positive integer (e.g. reuse: 4), got {value!r}"
                )
            if role in TABLE_ATTRS or role in FIRMWARE_ATTRS:
                cfg.attrs.setdefault(layer, {})[role] = value
            else:
                cfg.layers.setdefault(layer, {})[role] = config_type(
                    value, f"layers.{layer}.{role}"
                )
    return cfg


def check_against(cfg: PrecisionConfig, graph: Graph) -> None:
    """Every name in the config must exist in the graph, with roles its op has."""
    for name in cfg.inputs:
        if name not in graph.inputs:
            raise ConfigError(
                f"config input {name!r} is not a model input; inputs are {list(graph.inputs)}"
            )
    nodes = {n.name: n for n in graph.nodes}
    for layer in {*cfg.layers, *cfg.attrs}:
        if layer not in nodes:
            raise ConfigError(
                f"config layer {layer!r} is not in the model; layers are {', '.join(nodes)}"
            )
    for layer, roles in cfg.layers.items():
        op = get_op(nodes[layer].op)
        for role in roles:
            if role not in op.roles:
                raise ConfigError(
                    f"layer {layer!r} ({op.name}) has no precision role {role!r}; "
                    f"its roles are {', '.join(op.roles) or 'none (it keeps its input type)'}"
                )
