"""ONNX (opset 13+) and QONNX importer: an ``onnx.ModelProto`` -> float :class:`~lightspeed.ir.Graph`.

The importer walks the ONNX nodes in order and keeps three tables: constants
(initializers, ``Constant`` nodes and everything folded from them), aliases
(tensors removed by ``Identity``/``Dropout``/``Cast``) and the IR shapes of the
dynamic tensors (without the batch axis). Constant subgraphs -- including the
``Shape -> Gather -> Concat -> Reshape`` chains exporters emit -- are folded
with ``onnx.reference``; ``Shape`` of a dynamic tensor yields a sentinel for
the batch dimension that only ``Reshape`` may consume.

Each ONNX op is translated by the handler its op module registers
(``Op.onnx_import`` in ``lightspeed/ops/``). Afterwards
:func:`lightspeed.ir.passes.standard` removes dead nodes and folds affine
constants (BatchNormalization, ``Mul``/``Add``/``Sub``/``Div`` by a constant,
HardSigmoid's scale) into the preceding dense/conv/batchnorm.

QONNX ``Quant``/``BipolarQuant`` (see :mod:`lightspeed.ops.quant`) on
constants fold into the values and record the trained type on the consuming
layer (``node.types``); on activations they become ``quant`` nodes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightspeed.errors import ModelError, ShapeError
from lightspeed.fixed import FixedType, parse_type
from lightspeed.ir import Graph, Shape, passes
from lightspeed.ops.onnx_import import ImportState


def load_onnx(source: str | Path | Any) -> Any:
    """Read an ONNX file (or pass a ModelProto through); malformed input -> ModelError."""
    import onnx

    if isinstance(source, onnx.ModelProto):
        return source
    path = Path(source)
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} does not exist; check the path")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, external data errors, ...
        raise ModelError(
            f"{str(path)!r} is not a readable ONNX model ({type(exc).__name__}: {exc}); "
            "re-export it with torch.onnx.export or onnx.save"
        ) from None
    if not model.graph.node:
        raise ModelError(f"{str(path)!r} holds no ONNX graph nodes; is it really an ONNX model?")
    return model


InputShape = Sequence[int] | Mapping[str, Sequence[int]] | str | None


def split_input_shape(spec: Any) -> tuple[list[str] | None, list[Shape]]:
    """(input names if the user named them, shapes) from every accepted ``input_shape`` form.

    A tuple (one input), a list of tuples, a dict ``{input: shape}``, or the CLI
    string ``"3,32,32"`` / ``"x:16;y:3,8"`` (inputs separated by ``;``, dims by
    ``,`` or ``x``). Shapes never include the batch axis.
    """
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split(";") if p.strip()]
        named = [p.rpartition(":") for p in parts]
        shapes = []
        for part, (_, _, dims) in zip(parts, named, strict=True):
            try:
                shapes.append(tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip()))
            except ValueError:
                raise ShapeError(
                    f"cannot parse input shape {part!r}; use e.g. 3,32,32 or name:3,32,32"
                ) from None
        names = [n for n, _, _ in named]
        return (names if all(names) else None), shapes
    if isinstance(spec, Mapping):
        return [str(k) for k in spec], [tuple(int(d) for d in v) for v in spec.values()]
    items: tuple[Any, ...] = tuple(spec)
    if items and all(isinstance(d, (list, tuple)) for d in items):
        return None, [tuple(int(v) for v in d) for d in items]
    return None, [tuple(int(d) for d in items)]


def parse_input_shape(spec: InputShape, names: list[str]) -> dict[str, Shape]:
    """``--input-shape`` as ``{input: shape}`` for a model whose inputs are ``names``."""
    if spec is None:
        return {}
    given, shapes = split_input_shape(spec)
    if given is not None:
        return dict(zip(given, shapes, strict=True))
    if len(shapes) > len(names):
        raise ShapeError(f"--input-shape {spec!r} names more inputs than the model has")
    if len(shapes) == 1 and len(names) != 1 and not isinstance(spec, str):
        raise ShapeError(
            f"the model has {len(names)} inputs ({', '.join(names)}); give --input-shape per input "
            "as name:dims;name:dims"
        )
    return dict(zip(names, shapes, strict=False))


def import_onnx(source: str | Path | Any, input_shape: InputShape = None) -> Graph:
    """Import an ONNX/QONNX model (path or ModelProto) into a float IR graph."""
    from onnx import numpy_helper

    from lightspeed.frontends import _patterns

    model = load_onnx(source)
    _patterns.check_layers(model)  # name an LSTM/attention/LayerNorm before its small ops fail
    g = model.graph
    st = ImportState()
    st.meta = _lightspeed_metadata(model)
    st.exact = bool(st.meta)
    st.opset = max(
        (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13
    )
    for init in g.initializer:
        try:
            st.consts[init.name] = numpy_helper.to_array(init)
        except Exception as exc:
            raise ModelError(
                f"initializer {init.name!r} cannot be read ({exc}); keep external data next to "
                "the model file"
            ) from None
    nodes = _rewritten(g, st)
    for vi_node in nodes:
        for t in vi_node.input:
            st.uses[t] = st.uses.get(t, 0) + 1
    for o in g.output:
        st.uses[o.name] = st.uses.get(o.name, 0) + 1
    inputs = _graph_inputs(g, st, input_shape)
    for t, s in inputs.items():
        st.shapes[t] = s
        st.names.add(t)

    from lightspeed.frontends import _convert, _scales

    for onode in nodes:
        _convert.convert_node(onode, st, model)

    outputs = []
    for o in g.output:
        r = st.resolve(o.name)
        if r in st.consts:
            raise ModelError(
                f"graph output {o.name!r} is a constant (it does not depend on the input); "
                "remove it from the model outputs"
            )
        outputs.append(r)
    _restore_output_names(st, outputs, [o.name for o in g.output], inputs)
    name = g.name or (Path(source).stem if isinstance(source, (str, Path)) else "model")
    graph = Graph(name=name, inputs=inputs, outputs=outputs, nodes=st.nodes)
    graph.input_types = _input_annotations(g, inputs)
    passes.standard(graph, exact=st.exact)
    _scales.apply_scales(graph)
    _apply_metadata(st.meta, graph)  # after folding: the exported nodes exist as exported
    graph = passes.standard(graph)
    integer = [vi.name for vi in g.input if vi.name in inputs
               and vi.type.tensor_type.elem_type in _INDEX_ELEM_TYPES]  # fmt: skip
    if integer:  # edge lists: typed ap_uint<k> for indices 0 .. n-1 (ops/gather.py)
        from lightspeed.ops.gather import type_index_inputs

        type_index_inputs(graph, integer)
    return graph


# ONNX INT8, UINT8, INT16, UINT16, INT32, INT64, UINT32, UINT64: integer (index) inputs
_INDEX_ELEM_TYPES = (3, 2, 5, 4, 6, 7, 12, 13)


def _rewritten(g: Any, st: ImportState) -> list[Any]:
    """The graph's nodes after every op's ONNX rewrite (fused float forms, e.g. GELU)."""
    from lightspeed.ops.onnx_import import OnnxGraph
    from lightspeed.ops.registry import onnx_rewrites

    og = OnnxGraph(list(g.node), st.consts, [o.name for o in g.output])
    for rewrite in onnx_rewrites():
        rewrite(og)
    return og.nodes


def _lightspeed_metadata(model: Any) -> dict[str, Any]:
    """The exact types a lightspeed QONNX export stored (see :mod:`.qonnx_export`), if any."""
    import json

    from lightspeed.ops.onnx_export import META_KEY

    for prop in model.metadata_props:
        if prop.key == META_KEY:
            try:
                meta = json.loads(prop.value)
            except ValueError:
                raise ModelError(
                    f"metadata {META_KEY!r} is not valid JSON; re-export the model"
                ) from None
            if not isinstance(meta, dict) or not isinstance(meta.get("nodes"), dict):
                raise ModelError(f"metadata {META_KEY!r} has no 'nodes' table; re-export the model")
            return meta
    return {}


def _apply_metadata(meta: dict[str, Any], graph: Graph) -> None:
    """Pin every role of every node to the exported type (QONNX cannot state them all)."""
    from lightspeed.ops.onnx_export import META_ATTRS

    nodes = meta.get("nodes", {})
    for node in graph.nodes:
        entry = nodes.get(node.name)
        if not entry or entry.get("op") != node.op:
            continue
        prec = {r: parse_type(t) for r, t in entry.get("precision", {}).items()}
        if prec:
            node.types = prec
        for k, v in entry.get("attrs", {}).items():
            if k in META_ATTRS:
                node.attrs[k] = v


def _graph_inputs(g: Any, st: ImportState, input_shape: InputShape) -> dict[str, Shape]:
    names = [i.name for i in g.input if i.name not in st.consts]
    if not names:
        raise ModelError("the model has no (non-constant) inputs")
    given = parse_input_shape(input_shape, names)
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ShapeError(
            f"--input-shape names {', '.join(unknown)}, but the model inputs are {', '.join(names)}"
        )
    out: dict[str, Shape] = {}
    for vi in g.input:
        if vi.name in st.consts:
            continue
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            raise ModelError(
                f"input {vi.name!r} is not a tensor (sequence/map inputs are not supported)"
            )
        if tt.elem_type not in (1, 10, 11, 16, *_INDEX_ELEM_TYPES):  # floats; integers: indices
            raise ModelError(
                f"input {vi.name!r} has a non-float element type ({tt.elem_type}); "
                "lightspeed models take float inputs (and integer index inputs)"
            )
        dims: list[int | None] = []
        if tt.HasField("shape"):
            for d in tt.shape.dim:
                dims.append(
                    int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None
                )
        if vi.name in given:
            shape = given[vi.name]
            if dims and len(dims) - 1 != len(shape):
                raise ShapeError(
                    f"--input-shape {shape} for {vi.name!r} has {len(shape)} dims but the model "
                    f"input has {len(dims) - 1} besides the batch axis; give it without the batch axis"
                )
            if any(d <= 0 for d in shape):
                raise ShapeError(f"--input-shape {shape} for {vi.name!r} must be positive integers")
            for i, (d, s) in enumerate(zip(dims[1:], shape, strict=False)):
                if d is not None and d != s:
                    raise ShapeError(
                        f"--input-shape {shape} for {vi.name!r} contradicts the model's static "
                        f"dim {i + 1} = {d}"
                    )
            st.batch[vi.name] = dims[0] if dims else None
            out[vi.name] = tuple(shape)
            continue
        if not tt.HasField("shape") or not dims:
            raise ShapeError(
                f"input {vi.name!r} has no shape in the model; pass --input-shape (without the "
                "batch axis), e.g. --input-shape 16"
            )
        if len(dims) < 2:
            raise ShapeError(
                f"input {vi.name!r} has shape {dims}: lightspeed needs a batch axis first plus "
                "at least one feature axis; re-export with a (batch, features) input"
            )
        if any(d is None for d in dims[1:]):
            shown = ["?" if d is None else d for d in dims[1:]]
            raise ShapeError(
                f"input {vi.name!r} has dynamic non-batch dims {shown}; pass --input-shape "
                "with the static shape without the batch axis (input_shape=... in Python)"
            )
        st.batch[vi.name] = dims[0]
        out[vi.name] = tuple(int(d) for d in dims[1:] if d is not None)
    return out


def _restore_output_names(st: ImportState, resolved: list[str], wanted: list[str], inputs) -> None:
    """Rename tensors so graph outputs keep their ONNX names after aliases/folds."""
    for r, w in zip(resolved, wanted, strict=True):
        if r == w or r in inputs or w in st.shapes or resolved.count(r) > 1:
            continue
        for n in st.nodes:
            n.inputs = [w if t == r else t for t in n.inputs]
            n.outputs = [w if t == r else t for t in n.outputs]
        st.shapes[w] = st.shapes.pop(r)
        resolved[resolved.index(r)] = w


_QONNX_INT = re.compile(r"(U?)INT(\d+)$")
_QONNX_FIXED = re.compile(r"FIXED<(\d+),(-?\d+)>$")
_QONNX_FLOAT = ("FLOAT32", "FLOAT16", "BFLOAT16")


def qonnx_datatype(name: str, tensor: str) -> FixedType | None:
    """The type a QONNX/FINN datatype annotation (``UINT8``, ``BIPOLAR``, ``FIXED<8,4>``) states.

    Values are taken to the nearest representable one (RND_CONV, SAT), as a
    QONNX input ``Quant`` does; float annotations state nothing (None).
    """
    dt = name.strip().upper()
    if dt in _QONNX_FLOAT:
        return None
    if dt == "BINARY":
        return FixedType(1, 1, False, "RND_CONV", "SAT")
    if dt in ("BIPOLAR", "TERNARY"):  # -1/+1 (and 0): two signed integer bits
        return FixedType(2, 2, True, "RND_CONV", "SAT")
    if m := _QONNX_INT.match(dt):
        bits = int(m.group(2))
        return FixedType(bits, bits, not m.group(1), "RND_CONV", "SAT")
    if m := _QONNX_FIXED.match(dt):
        return FixedType(int(m.group(1)), int(m.group(2)), True, "RND_CONV", "SAT")
    raise ModelError(
        f"input {tensor!r} is annotated with QONNX datatype {name!r}, which lightspeed cannot use "
        "as an input type; remove the annotation and give the type with --input-type "
        "(input_types={...} in Python)"
    )


def _input_annotations(g: Any, inputs: Mapping[str, Shape]) -> dict[str, FixedType]:
    """Input types from the graph's ``quantization_annotation`` (``finn_datatype`` entries)."""
    out: dict[str, FixedType] = {}
    for ann in g.quantization_annotation:
        if ann.tensor_name not in inputs:
            continue
        for kv in ann.quant_parameter_tensor_names:
            if kv.key == "finn_datatype":
                t = qonnx_datatype(kv.value, ann.tensor_name)
                if t is not None:
                    out[ann.tensor_name] = t
    return out
