"""Vitis HLS C++ writer: one function per layer, ``ap_fixed`` typedefs per role, pragmas.

This module holds the :class:`Writer` (typedefs, constant arrays, index
tables), the C++ helpers the emitters share, the per-node function wrapper
(:func:`emit_node`, which calls the node's registered emitter), the top
function, the testbench and the build script. The op bodies live in the
``emit_*`` modules (see :mod:`lightspeed.firmware.hls`).

The C++ spells out the operator contract literally (see :mod:`lightspeed.ops.mac`):
``acc = (accum_t)(acc + (accum_t)(x[i] * w[i]))`` in input order, so the
C simulation is bit-exact with the emulator by construction of ``ap_fixed``;
HLS unrolls the loops (II=1, fully parallel). Irregular access patterns (conv
patches, pooling windows, reshapes) use index tables computed by the emitters,
with -1 for zero padding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lightspeed.errors import UnsupportedOpError
from lightspeed.firmware.config import FirmwareOptions
from lightspeed.firmware.hls.registry import EMITTERS, EmitContext, supported_ops
from lightspeed.fixed import FixedType, to_float
from lightspeed.ir.graph import Node
from lightspeed.quantize.model import QuantizedModel


def ctype(t: FixedType) -> str:
    base = "ap_fixed" if t.signed else "ap_ufixed"
    return f"{base}<{t.width},{t.integer},AP_{t.rounding},AP_{t.overflow}>"


def raw_type(t: FixedType) -> str:
    return f"ap_int<{t.width}>" if t.signed else f"ap_uint<{t.width}>"


def ident(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return s if re.match(r"[A-Za-z_]", s) else f"t_{s}"


def cnum(m: int, t: FixedType) -> str:
    """Exact C++ literal of the fixed value m * 2**-frac (hex float: exact for <= 53 bits)."""
    if abs(int(m)) >= 1 << 53:
        raise NotImplementedError(
            f"constants wider than 53 bits ({t}) cannot be written exactly as C++ literals yet"
        )
    v = float(to_float(np.array([int(m)]), t)[0])
    return v.hex() if v != 0 else "0.0"


@dataclass
class Writer:
    q: Any
    opts: FirmwareOptions
    types: list[str] = field(default_factory=list)
    consts: list[str] = field(default_factory=list)
    funcs: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    decls: list[str] = field(default_factory=list)
    _typedefs: dict[str, str] = field(default_factory=dict)

    def typedef(self, t: FixedType, hint: str) -> str:
        key = ctype(t)
        if key not in self._typedefs:
            name = f"{ident(hint)}_t"
            if name in self._typedefs.values():
                name = f"{ident(hint)}_{len(self._typedefs)}_t"
            self._typedefs[key] = name
            self.types.append(f"typedef {key} {name};")
        return self._typedefs[key]

    def tensor_type(self, tensor: str) -> str:
        return self.typedef(self.q.tensor_types[tensor], f"{tensor}")

    def array(self, name: str, ctype_: str, values: list[str], dims: tuple[int, ...]) -> None:
        body = ", ".join(values)
        dim = "".join(f"[{d}]" for d in dims)
        self.consts.append(f"static const {ctype_} {name}{dim} = {{{body}}};")

    def int_table(self, name: str, arr: np.ndarray) -> None:
        a = np.asarray(arr, dtype=np.int64)
        self.array(name, "int", [str(int(v)) for v in a.flat], (a.size,))


def flat_size(shape) -> int:
    """Number of elements of a tensor of ``shape`` (1 for a scalar)."""
    return int(np.prod(shape)) if len(shape) else 1


def elementwise(n: int, expr: str) -> list[str]:
    """Body lines setting ``y[i] = expr`` for every output ``i < n`` (unrolled)."""
    return [
        f"  for (int i = 0; i < {n}; i++) {{",
        "    #pragma HLS UNROLL",
        f"    y[i] = {expr};",
        "  }",
    ]


def emit_node(w: Writer, node: Node) -> None:
    """Write ``layer_<node>(x..., y)`` with the node's registered emitter."""
    q = w.q
    shapes = q.graph.shapes
    ins, out = node.inputs, node.outputs[0]
    in_t = [w.tensor_type(t) for t in ins]
    out_t = w.tensor_type(out)
    args = ", ".join(
        f"const {t} x{i if len(ins) > 1 else ''}[{flat_size(shapes[n])}]"
        for i, (n, t) in enumerate(zip(ins, in_t, strict=True))
    )
    sig = f"static void layer_{ident(node.name)}({args}, {out_t} y[{flat_size(shapes[out])}])"
    prec = q.precision.get(node.name, {})
    ctx = EmitContext(
        w=w,
        node=node,
        prec=prec,
        qparams=q.qparams.get(node.name, {}),
        role={r: w.typedef(t, f"{node.name}_{r}") for r, t in prec.items()},
        name=ident(node.name),
        in_types=[q.tensor_types[t] for t in ins],
        in_ctypes=in_t,
        out_ctype=out_t,
        in_shapes=[shapes[t] for t in ins],
        out_shape=shapes[out],
    )
    lines = EMITTERS[node.op](ctx)
    w.funcs.append("\n".join([sig + " {", "  #pragma HLS INLINE", *lines, "}"]))


def write_sources(q: QuantizedModel, opts: FirmwareOptions) -> dict[str, str]:
    """{relative path: text} of the HLS project (firmware, testbench, build script).

    With a reuse factor the top's pipeline takes a vector every ``max(R)`` clocks and the
    reused layers carry their own unroll/partition/allocation pragmas (hls/emit_dense.py)."""
    from lightspeed.firmware.reuse import design_ii

    supported = supported_ops()
    bad = sorted({n.op for n in q.graph.nodes if n.op not in supported})
    if bad:
        raise UnsupportedOpError(f"the HLS backend does not support op(s) {', '.join(bad)}")
    w = Writer(q, opts)
    for node in q.graph.nodes:
        emit_node(w, node)
    top = opts.top
    g = q.graph
    in_args = [
        f"const {w.tensor_type(n)} {ident('in_' + n)}[{flat_size(g.inputs[n])}]" for n in g.inputs
    ]
    out_args = [
        f"{w.tensor_type(n)} {ident('out_' + n)}[{flat_size(g.shapes[n])}]" for n in g.outputs
    ]
    body = []
    for a in [*[ident("in_" + n) for n in g.inputs], *[ident("out_" + n) for n in g.outputs]]:
        body.append(f"  #pragma HLS ARRAY_PARTITION variable={a} complete dim=0")
    body.append(f"  #pragma HLS PIPELINE II={design_ii(q, opts)}")
    name_of = {n: ident("in_" + n) for n in g.inputs}
    for node in g.nodes:
        out = node.outputs[0]
        if out in g.outputs:
            name_of[out] = ident("out_" + out)
        else:
            name_of[out] = ident("t_" + out)
            body.append(f"  {w.tensor_type(out)} {name_of[out]}[{flat_size(g.shapes[out])}];")
            body.append(f"  #pragma HLS ARRAY_PARTITION variable={name_of[out]} complete dim=0")
        args = ", ".join([*[name_of[t] for t in node.inputs], name_of[out]])
        body.append(f"  layer_{ident(node.name)}({args});")
    proto = f"void {top}({', '.join(in_args + out_args)})"
    header = "\n".join([
        f"// Generated by lightspeed for model '{g.name}'. Bit-exact with the lightspeed emulator.",
        f"#ifndef {top.upper()}_H",
        f"#define {top.upper()}_H",
        "#include <ap_fixed.h>",
        "#include <ap_int.h>",
        "",
        *w.types,
        "",
        f"{proto};",
        "#endif",
        "",
    ])  # fmt: skip
    helper = """// ROM address: clamp(floor(x / 2**step) - base, 0, size - 1) on x's raw integer bits
// (trunc instead of floor with to_zero: the hls4ml table layout)
template <class R, class T>
static int table_index(const T& x, int sh, long long base, int size, bool to_zero = false) {
  R raw;
  raw.range() = x.range();
  ap_int<96> q = raw;
  if (sh < 0 && to_zero && q < 0) q = -ap_int<96>((-q) >> (-sh));
  else q = sh >= 0 ? ap_int<96>(q << sh) : ap_int<96>(q >> (-sh));
  q -= base;
  if (q < 0) return 0;
  if (q > size - 1) return size - 1;
  return q.to_int();
}
"""
    cpp = "\n".join([
        f'#include "{top}.h"',
        "",
        helper,
        *w.consts,
        "",
        *w.funcs,
        "",
        proto + " {",
        *body,
        "}",
        "",
    ])  # fmt: skip
    return {
        f"firmware/{top}.h": header,
        f"firmware/{top}.cpp": cpp,
        "tb/tb.cpp": testbench(q, w, top),
        "build.tcl": build_tcl(top, opts),
    }


def testbench(q: QuantizedModel, w: Writer, top: str) -> str:
    g = q.graph
    lines = [
        "// Testbench: reads float64 input vectors, writes the raw output integers (int64 per value).",
        "// usage: tb IN.bin OUT.bin N   (IN: N x inputs as float64; OUT: N x outputs as int64)",
        "#include <cstdio>",
        "#include <cstdlib>",
        "#include <vector>",
        f'#include "{top}.h"',
        "",
        "int main(int argc, char** argv) {",
        '  const char* fin = argc > 1 ? argv[1] : "tb_input.bin";',
        '  const char* fout = argc > 2 ? argv[2] : "tb_output.bin";',
        "  long n = argc > 3 ? std::atol(argv[3]) : 1;",
        '  FILE* f = std::fopen(fin, "rb");',
        '  FILE* o = std::fopen(fout, "wb");',
        '  if (!f || !o) { std::fprintf(stderr, "cannot open %s / %s\\n", fin, fout); return 2; }',
        "  for (long v = 0; v < n; v++) {",
    ]
    for name, shape in g.inputs.items():
        a, sz = ident("in_" + name), flat_size(shape)
        lines += [
            f"    static {w.tensor_type(name)} {a}[{sz}];",
            f"    for (int i = 0; i < {sz}; i++) {{ double d; if (std::fread(&d, 8, 1, f) != 1) return 3; {a}[i] = d; }}",
        ]
    for name in g.outputs:
        lines.append(
            f"    static {w.tensor_type(name)} {ident('out_' + name)}[{flat_size(g.shapes[name])}];"
        )
    args = ", ".join([ident("in_" + n) for n in g.inputs] + [ident("out_" + n) for n in g.outputs])
    lines.append(f"    {top}({args});")
    for name in g.outputs:
        t = q.tensor_types[name]
        a, sz = ident("out_" + name), flat_size(g.shapes[name])
        lines += [
            f"    for (int i = 0; i < {sz}; i++) {{",
            f"      {raw_type(t)} r; r.range() = {a}[i].range();",
            "      long long x = r.to_int64(); std::fwrite(&x, 8, 1, o);",
            "    }",
        ]
    lines += ["  }", "  std::fclose(f); std::fclose(o);", "  return 0;", "}", ""]
    return "\n".join(lines)


def build_tcl(top: str, opts: FirmwareOptions, part: str = "xcvu9p-flga2104-2L-e") -> str:
    return f"""# Vitis HLS build script generated by lightspeed: vitis_hls -f build.tcl
open_project -reset {top}_prj
set_top {top}
add_files firmware/{top}.cpp -cflags "-std=c++14"
add_files -tb tb/tb.cpp -cflags "-std=c++14 -I../../firmware"
open_solution -reset solution1 -flow_target vivado
set_part {{{part}}}
create_clock -period {opts.clock_period:g} -name default
# C simulation reads tb_input.bin (float64 vectors) from the project directory if present
if {{[file exists tb_input.bin]}} {{ csim_design -argv "[pwd]/tb_input.bin [pwd]/tb_output.bin 1" }}
csynth_design
export_design -format ip_catalog
exit
"""
