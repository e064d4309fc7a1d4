"""Vitis HLS C++ writer: one function per layer, ``ap_fixed`` typedefs per role, pragmas.

The C++ spells out the operator contract literally (see :mod:`lightspeed.ops.mac`):
``acc = (accum_t)(acc + (accum_t)(x[i] * w[i]))`` in input order, so the
C simulation is bit-exact with the emulator by construction of ``ap_fixed``;
HLS unrolls the loops (II=1, fully parallel). Irregular access patterns (conv
patches, pooling windows, reshapes) use index tables computed here, with -1
for zero padding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lightspeed.errors import UnsupportedOpError
from lightspeed.firmware.config import FirmwareOptions
from lightspeed.fixed import FixedType, to_float
from lightspeed.ir.graph import Node

SUPPORTED = {
    "dense", "conv", "batchnorm", "relu", "clip", "leaky_relu", "quant", "sigmoid", "tanh", "softmax",
    "add", "mul", "concat", "maxpool", "avgpool", "global_avgpool", "flatten", "reshape", "transpose",
}  # fmt: skip


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


def _size(shape) -> int:
    return int(np.prod(shape)) if len(shape) else 1


def _mac_loop(acc_t: str, w_name: str, w_index: str, x_index: str, guard: str | None) -> list[str]:
    body = f"acc = ({acc_t})(acc + ({acc_t})(x[{x_index}] * {w_name}[{w_index}]));"
    if guard:
        body = f"if ({guard}) {body}"
    return [body]


def emit_node(w: Writer, node: Node) -> None:
    q = w.q
    prec = q.precision.get(node.name, {})
    qp = q.qparams.get(node.name, {})
    fn = f"layer_{ident(node.name)}"
    shapes = q.graph.shapes
    ins = node.inputs
    out = node.outputs[0]
    in_t = [w.tensor_type(t) for t in ins]
    out_t = w.tensor_type(out)
    n_out = _size(shapes[out])
    args = ", ".join(
        f"const {t} x{i if len(ins) > 1 else ''}[{_size(shapes[n])}]"
        for i, (n, t) in enumerate(zip(ins, in_t, strict=True))
    )
    sig = f"static void {fn}({args}, {out_t} y[{n_out}])"
    lines: list[str] = []
    role = {r: w.typedef(t, f"{node.name}_{r}") for r, t in prec.items()}
    p = ident(node.name)
    op = node.op

    if op in ("dense", "conv"):
        wt = prec["weight"]
        if op == "dense":
            wm = np.asarray(qp["weight"])  # (fan_in, fan_out)
            fan_in, fan_out = wm.shape
            rows = _size(shapes[ins[0]][:-1]) if len(shapes[ins[0]]) > 1 else 1
            w.array(f"{p}_w", role["weight"], [cnum(v, wt) for v in wm.T.flat], (fan_out, fan_in))
            bias = qp.get("bias")
            if bias is not None:
                w.array(
                    f"{p}_b", role["bias"], [cnum(v, prec["bias"]) for v in bias.flat], (fan_out,)
                )
            lines += [
                f"  for (int r = 0; r < {rows}; r++) {{",
                "    #pragma HLS UNROLL",
                f"    for (int j = 0; j < {fan_out}; j++) {{",
                "      #pragma HLS UNROLL",
                f"      {role['accum']} acc = "
                + (f"({role['accum']}){p}_b[j];" if bias is not None else "0;"),
                f"      for (int i = 0; i < {fan_in}; i++) {{",
                "        #pragma HLS UNROLL",
                f"        acc = ({role['accum']})(acc + ({role['accum']})(x[r * {fan_in} + i] * {p}_w[j][i]));",
                "      }",
                f"      y[r * {fan_out} + j] = ({out_t})acc;",
                "    }",
                "  }",
            ]
        else:
            from lightspeed.ops.conv import conv_attrs, patches, weight_matrix

            wq = np.asarray(qp["weight"])
            group = conv_attrs(node)[4]
            cout, cin_g = wq.shape[0], wq.shape[1]
            cout_g = cout // group
            xshape = shapes[ins[0]]
            flat_idx = np.arange(_size(xshape)).reshape(xshape) + 1  # 0 marks padding
            pt = patches(flat_idx[None], node)[0]  # (*O, *k, C): the emulator's patch order
            nd = wq.ndim - 2
            osz = _size(pt.shape[:nd])
            pt = pt.reshape(osz, *pt.shape[nd:])
            psz = cin_g * _size(wq.shape[2:])
            idx = (
                np.stack(
                    [pt[..., g * cin_g : (g + 1) * cin_g].reshape(osz, psz) for g in range(group)]
                )
                - 1
            )
            w.int_table(f"{p}_idx", idx)
            wmat = np.concatenate(
                [weight_matrix(wq, group, g) for g in range(group)], axis=1
            )  # (P, Cout)
            w.array(f"{p}_w", role["weight"], [cnum(v, wt) for v in wmat.T.flat], (cout, psz))
            bias = qp.get("bias")
            if bias is not None:
                w.array(f"{p}_b", role["bias"], [cnum(v, prec["bias"]) for v in bias.flat], (cout,))
            lines += [
                f"  for (int co = 0; co < {cout}; co++) {{",
                "    #pragma HLS UNROLL",
                f"    const int g = co / {cout_g};",
                f"    for (int o = 0; o < {osz}; o++) {{",
                "      #pragma HLS UNROLL",
                f"      {role['accum']} acc = "
                + (f"({role['accum']}){p}_b[co];" if bias is not None else "0;"),
                f"      for (int k = 0; k < {psz}; k++) {{",
                "        #pragma HLS UNROLL",
                f"        const int i = {p}_idx[(g * {osz} + o) * {psz} + k];",
                f"        if (i >= 0) acc = ({role['accum']})(acc + ({role['accum']})(x[i] * {p}_w[co][k]));",
                "      }",
                f"      y[co * {osz} + o] = ({out_t})acc;",
                "    }",
                "  }",
            ]
    elif op == "batchnorm":
        xshape = shapes[ins[0]]
        per_c = _size(xshape[1:]) if len(xshape) > 1 else 1
        c = xshape[0]
        w.array(f"{p}_s", role["weight"], [cnum(v, prec["weight"]) for v in qp["scale"].flat], (c,))
        w.array(f"{p}_b", role["bias"], [cnum(v, prec["bias"]) for v in qp["shift"].flat], (c,))
        lines += [
            f"  for (int i = 0; i < {n_out}; i++) {{",
            "    #pragma HLS UNROLL",
            f"    const int c = i / {per_c};",
            f"    {role['accum']} acc = ({role['accum']}){p}_b[c];",
            f"    acc = ({role['accum']})(acc + ({role['accum']})(x[i] * {p}_s[c]));",
            f"    y[i] = ({out_t})acc;",
            "  }",
        ]
    elif op in ("relu", "clip", "leaky_relu", "quant"):
        if op == "relu":
            expr = f"x[i] > 0 ? ({out_t})x[i] : ({out_t})0"
        elif op == "quant":
            expr = f"({out_t})x[i]"
        elif op == "clip":
            from lightspeed.ops.activations import clip_int_bounds

            t_in = q.tensor_types[ins[0]]
            lo, hi = clip_int_bounds(node, t_in)
            w.consts.append(
                f"static const {in_t[0]} {p}_lo = {cnum(lo, t_in)}, {p}_hi = {cnum(hi, t_in)};"
            )
            expr = f"({out_t})(x[i] < {p}_lo ? {p}_lo : (x[i] > {p}_hi ? {p}_hi : x[i]))"
        else:
            a = int(np.asarray(qp["alpha"]).reshape(()))
            w.consts.append(f"static const {role['param']} {p}_alpha = {cnum(a, prec['param'])};")
            expr = f"x[i] > 0 ? ({out_t})x[i] : ({out_t})(x[i] * {p}_alpha)"
        lines += [
            f"  for (int i = 0; i < {n_out}; i++) {{",
            "    #pragma HLS UNROLL",
            f"    y[i] = {expr};",
            "  }",
        ]
    elif op in ("sigmoid", "tanh"):
        from lightspeed.ops.tables import table_geometry

        t_lo, _, size, step_log2 = table_geometry(node)
        t_in = q.tensor_types[ins[0]]
        tt = prec["table"]
        w.array(f"{p}_table", role["table"], [cnum(v, tt) for v in qp["table"].flat], (size,))
        lines += [
            f"  for (int i = 0; i < {n_out}; i++) {{",
            "    #pragma HLS UNROLL",
            f"    y[i] = ({out_t}){p}_table[table_index<{raw_type(t_in)}>(x[i], {-step_log2 - t_in.frac}, "
            f"{round(t_lo * 2.0**-step_log2)}, {size})];",
            "  }",
        ]
    elif op == "softmax":
        from lightspeed.ops.tables import softmax_geometry

        t_in = q.tensor_types[ins[0]]
        n = shapes[ins[0]][-1]
        rows = n_out // n
        _, es, e_step, isz, i_step = softmax_geometry(node, n)
        r_ = float(node.attrs.get("exp_range", 8.0))
        et, acc, inv = prec["exp_table"], prec["accum"], prec["inv_table"]
        w.array(f"{p}_exp", role["exp_table"], [cnum(v, et) for v in qp["exp_table"].flat], (es,))
        w.array(f"{p}_inv", role["inv_table"], [cnum(v, inv) for v in qp["inv_table"].flat], (isz,))
        d_t = FixedType(t_in.width + 1, t_in.integer + 1, True)
        sum_bits = max(n - 1, 1).bit_length() + 1
        s_t = FixedType(et.width + sum_bits, et.integer + sum_bits, et.signed)
        lines += [
            f"  for (int r = 0; r < {rows}; r++) {{",
            "    #pragma HLS UNROLL",
            f"    {in_t[0]} mx = x[r * {n}];",
            f"    for (int i = 1; i < {n}; i++) {{",
            "      #pragma HLS UNROLL",
            f"      if (x[r * {n} + i] > mx) mx = x[r * {n} + i];",
            "    }",
            f"    {role['exp_table']} e[{n}];",
            f"    {ctype(s_t)} s = 0;",
            f"    for (int i = 0; i < {n}; i++) {{",
            "      #pragma HLS UNROLL",
            f"      {ctype(d_t)} d = x[r * {n} + i] - mx;",
            f"      e[i] = {p}_exp[table_index<{raw_type(d_t)}>(d, {-e_step - d_t.frac}, "
            f"{round(-r_ * 2.0**-e_step)}, {es})];",
            "      s += e[i];",
            "    }",
            f"    {role['accum']} sa = ({role['accum']})s;",
            f"    {role['inv_table']} inv = {p}_inv[table_index<{raw_type(acc)}>(sa, {-i_step - acc.frac}, 0, {isz})];",
            f"    for (int i = 0; i < {n}; i++) {{",
            "      #pragma HLS UNROLL",
            f"      y[r * {n} + i] = ({out_t})(e[i] * inv);",
            "    }",
            "  }",
        ]
    elif op in ("add", "mul"):
        # broadcasting through index tables
        oshape = shapes[out]
        tabs = []
        for i, t in enumerate(ins):
            idx = np.broadcast_to(np.arange(_size(shapes[t])).reshape(shapes[t]), oshape).reshape(
                -1
            )
            w.int_table(f"{p}_i{i}", idx)
            tabs.append(f"x{i}[{p}_i{i}[i]]")
        sym = " + " if op == "add" else " * "
        lines += [
            f"  for (int i = 0; i < {n_out}; i++) {{",
            "    #pragma HLS UNROLL",
            f"    y[i] = ({out_t})({sym.join(tabs)});",
            "  }",
        ]
    elif op == "concat":
        from lightspeed.ops.elementwise import _axis

        parts = [np.full(shapes[t], i) for i, t in enumerate(ins)]
        locs = [np.arange(_size(shapes[t])).reshape(shapes[t]) for t in ins]
        ax = _axis(node, len(shapes[ins[0]]))
        src = np.concatenate(parts, axis=ax).reshape(-1)
        loc = np.concatenate(locs, axis=ax).reshape(-1)
        for i in range(n_out):
            lines.append(f"  y[{i}] = ({out_t})x{int(src[i])}[{int(loc[i])}];")
    elif op in ("maxpool", "avgpool", "global_avgpool"):
        from lightspeed.ops.pooling import pool_attrs, recip, windows

        xshape = shapes[ins[0]]
        flat_idx = np.arange(_size(xshape)).reshape(xshape)
        win = windows(flat_idx[None].astype(np.int64), node, -1)[0]  # (C, *O, K), -1 = padding
        k = win.shape[-1]
        w.int_table(f"{p}_idx", win.reshape(-1))
        t_in = q.tensor_types[ins[0]]
        if op == "maxpool":
            lines += [
                f"  for (int o = 0; o < {n_out}; o++) {{",
                "    #pragma HLS UNROLL",
                f"    {in_t[0]} m = 0; bool any = false;",
                f"    for (int j = 0; j < {k}; j++) {{",
                "      #pragma HLS UNROLL",
                f"      const int i = {p}_idx[o * {k} + j];",
                "      if (i >= 0 && (!any || x[i] > m)) { m = x[i]; any = true; }",
                "    }",
                f"    y[o] = ({out_t})m;",
                "  }",
            ]
        else:
            kk = int(np.prod(pool_attrs(node, xshape)[0]))
            r, rfrac = recip(kk)
            bits = kk.bit_length() + 1
            s_t = FixedType(t_in.width + bits, t_in.integer + bits, True)
            r_t = FixedType(max(r.bit_length(), 1), max(r.bit_length(), 1) - rfrac, False)
            lines += [
                f"  const {ctype(r_t)} rc = {cnum(r, r_t)};",
                f"  for (int o = 0; o < {n_out}; o++) {{",
                "    #pragma HLS UNROLL",
                f"    {ctype(s_t)} s = 0;",
                f"    for (int j = 0; j < {k}; j++) {{",
                "      #pragma HLS UNROLL",
                f"      const int i = {p}_idx[o * {k} + j];",
                "      if (i >= 0) s += x[i];",
                "    }",
                f"    y[o] = ({out_t})(s * rc);",
                "  }",
            ]
    elif op in ("flatten", "reshape", "transpose"):
        xshape = shapes[ins[0]]
        idx = np.arange(_size(xshape)).reshape(xshape)
        if op == "transpose":
            idx = idx.transpose(*[int(v) for v in node.attrs["perm"]])
        w.int_table(f"{p}_idx", idx.reshape(-1))
        lines += [
            f"  for (int i = 0; i < {n_out}; i++) {{",
            "    #pragma HLS UNROLL",
            f"    y[i] = x[{p}_idx[i]];",
            "  }",
        ]
    else:  # pragma: no cover - guarded by SUPPORTED
        raise UnsupportedOpError(f"HLS backend: op {op} is not supported")
    w.funcs.append("\n".join([sig + " {", "  #pragma HLS INLINE", *lines, "}"]))


def write_sources(q, opts: FirmwareOptions) -> dict[str, str]:
    """{relative path: text} of the HLS project (firmware, testbench, build script)."""
    bad = sorted({n.op for n in q.graph.nodes if n.op not in SUPPORTED})
    if bad:
        raise UnsupportedOpError(f"the HLS backend does not support op(s) {', '.join(bad)}")
    w = Writer(q, opts)
    for node in q.graph.nodes:
        emit_node(w, node)
    top = opts.top
    g = q.graph
    in_args = [
        f"const {w.tensor_type(n)} {ident('in_' + n)}[{_size(g.inputs[n])}]" for n in g.inputs
    ]
    out_args = [f"{w.tensor_type(n)} {ident('out_' + n)}[{_size(g.shapes[n])}]" for n in g.outputs]
    body = []
    for a in [*[ident("in_" + n) for n in g.inputs], *[ident("out_" + n) for n in g.outputs]]:
        body.append(f"  #pragma HLS ARRAY_PARTITION variable={a} complete dim=0")
    body.append("  #pragma HLS PIPELINE II=1")
    name_of = {n: ident("in_" + n) for n in g.inputs}
    for node in g.nodes:
        out = node.outputs[0]
        if out in g.outputs:
            name_of[out] = ident("out_" + out)
        else:
            name_of[out] = ident("t_" + out)
            body.append(f"  {w.tensor_type(out)} {name_of[out]}[{_size(g.shapes[out])}];")
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
template <class R, class T>
static int table_index(const T& x, int sh, long long base, int size) {
  R raw;
  raw.range() = x.range();
  ap_int<96> q = raw;
  q = sh >= 0 ? ap_int<96>(q << sh) : ap_int<96>(q >> (-sh));
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


def testbench(q, w: Writer, top: str) -> str:
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
        a, sz = ident("in_" + name), _size(shape)
        lines += [
            f"    static {w.tensor_type(name)} {a}[{sz}];",
            f"    for (int i = 0; i < {sz}; i++) {{ double d; if (std::fread(&d, 8, 1, f) != 1) return 3; {a}[i] = d; }}",
        ]
    for name in g.outputs:
        lines.append(
            f"    static {w.tensor_type(name)} {ident('out_' + name)}[{_size(g.shapes[name])}];"
        )
    args = ", ".join([ident("in_" + n) for n in g.inputs] + [ident("out_" + n) for n in g.outputs])
    lines.append(f"    {top}({args});")
    for name in g.outputs:
        t = q.tensor_types[name]
        a, sz = ident("out_" + name), _size(g.shapes[name])
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
