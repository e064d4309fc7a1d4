"""Netlist -> synthesizable Verilog-2001 (accepted by Verilator and Yosys).

One module, flat: a ``wire signed`` per net sized from its value bounds, a
``reg`` per pipeline register (no reset on data, so shift registers can map to
SRLs), a valid shift register with synchronous reset, and shared functions:
one per distinct cast (quantization + overflow mode of an ``ap_fixed`` type)
and one per ROM table.
"""

from __future__ import annotations

from lightspeed.firmware.netlist import Net, Netlist, live_nets, signed_width
from lightspeed.firmware.verilog.lowering import Design

INC = {
    # increment added to floor(a / 2**s): see fixed._round_increment
    "RND": "qb",
    "RND_ZERO": "qb & (neg | r)",
    "RND_MIN_INF": "qb & r",
    "RND_INF": "qb & (~neg | r)",
    "RND_CONV": "qb & (r | odd)",
    "TRN_ZERO": "neg & rem",
}


def lit(v: int, width: int | None = None) -> str:
    """Signed sized literal holding v exactly (never relies on 32-bit integers)."""
    v = int(v)
    w = width or max(signed_width(v, v), 2)
    return f"{w}'sd{v}" if v >= 0 else f"-{w}'sd{-v}"


def _bit(a: str, k: int, wi: int) -> str:
    return f"{a}[{min(k, wi - 1)}]"


class _Casts:
    """Shared cast functions, one per distinct signature."""

    def __init__(self) -> None:
        self.funcs: dict[tuple, str] = {}
        self.text: list[str] = []

    def get(self, n: Net, src: Net) -> str:
        wi, wo = src.width, n.width
        s, mode, t = n.attrs["shift"], n.attrs["rounding"], n.attrs["ovf"]
        wq = signed_width(n.attrs["qlo"], n.attrs["qhi"])
        if t is not None:
            wq = max(wq, t.width + 1)
        clamp_lo = n.attrs.get("clamp_lo")
        key = (
            wi,
            wo,
            wq,
            s,
            mode,
            None if t is None else (t.width, t.signed, t.overflow),
            clamp_lo,
        )
        if key in self.funcs:
            return self.funcs[key]
        name = f"cast_{len(self.funcs)}"
        self.funcs[key] = name
        lines = [
            f"  // {'quantize ' + mode + ' by 2^-' + str(s) if s > 0 else 'align by 2^' + str(-s) if s < 0 else 'resize'}"
            + (f", then {t.overflow} to {t}" if t is not None else "")
            + (f", clamped below at {clamp_lo}" if clamp_lo is not None else ""),
            f"  function automatic signed [{wo - 1}:0] {name};",
            f"    input signed [{wi - 1}:0] a;",
            f"    reg signed [{wq - 1}:0] q;",
        ]
        body = []
        if s > 0:
            if mode == "TRN":
                body.append(f"q = a >>> {s};")
            else:
                lines.append("    reg qb, r, neg, odd, rem;")
                body.append(f"qb = {_bit('a', s - 1, wi)};")
                r_expr = f"|a[{min(s - 2, wi - 1)}:0]" if s >= 2 else "1'b0"
                body.append(f"r = {r_expr};")
                body.append(f"neg = a[{wi - 1}];")
                body.append(f"odd = {_bit('a', s, wi)};")
                body.append(f"rem = |a[{min(s - 1, wi - 1)}:0];")
                body.append(f"q = (a >>> {s}) + $signed({{1'b0, {INC[mode]}}});")
        elif s < 0:
            body.append(f"q = a <<< {-s};")
        else:
            body.append("q = a;")
        if t is None:
            body.append(f"{name} = q;")
        elif t.overflow == "WRAP":
            sel = f"q[{t.width - 1}:0]"
            body.append(
                f"{name} = $signed({sel});" if t.signed else f"{name} = $signed({{1'b0, {sel}}});"
            )
        else:
            hi = t.max_int
            lo = (-t.max_int if t.signed else t.min_int) if t.overflow == "SAT_SYM" else t.min_int
            if clamp_lo is not None:  # a ReLU fused into the saturation
                lo = max(lo, clamp_lo)
            over, under = f"q > {lit(hi, wq + 1)}", f"q < {lit(lo, wq + 1)}"
            if t.overflow == "SAT_ZERO":
                body.append(f"if (({over}) || ({under})) {name} = 0; else {name} = q;")
            else:
                body.append(
                    f"if ({over}) {name} = {lit(hi, wq + 1)}; else if ({under}) {name} = {lit(lo, wq + 1)};"
                    f" else {name} = q;"
                )
        lines.append("    begin")
        lines.extend("      " + b for b in body)
        lines.append("    end")
        lines.append("  endfunction")
        self.text.append("\n".join(lines))
        return name


def _rom_function(k: int, entries: tuple[int, ...]) -> str:
    wd = signed_width(min(entries), max(entries))
    wa = max(1, (len(entries) - 1).bit_length())
    lines = [
        f"  // ROM {k}: {len(entries)} entries",
        f"  function automatic signed [{wd - 1}:0] rom_{k};",
        f"    input [{wa - 1}:0] addr;",
        "    begin",
        "      case (addr)",
    ]
    lines += [f"        {i}: rom_{k} = {lit(v, wd + 1)};" for i, v in enumerate(entries)]
    lines += [
        f"        default: rom_{k} = {lit(0, wd + 1)};",
        "      endcase",
        "    end",
        "  endfunction",
    ]
    return "\n".join(lines)


def _expr(nl: Netlist, n: Net, casts: _Casts) -> str:
    a = [f"n{i}" for i in n.args]
    op = n.op
    if op == "const":
        return lit(n.attrs["value"])
    if op == "add":
        x = a[0] if not n.attrs["sha"] else f"({a[0]} <<< {n.attrs['sha']})"
        y = a[1] if not n.attrs["shb"] else f"({a[1]} <<< {n.attrs['shb']})"
        return f"{x} {'-' if n.attrs['sub'] else '+'} {y}"
    if op == "neg":
        return f"-{a[0]}"
    if op == "shl":
        return f"{a[0]} <<< {n.attrs['k']}"
    if op == "mulc":
        return f"{a[0]} * {lit(n.attrs['c'])}"
    if op == "mul":
        return f"{a[0]} * {a[1]}"
    if op == "cast":
        return f"{casts.get(n, nl.nets[n.args[0]])}({a[0]})"
    if op == "clamp":
        e = a[0]
        if n.attrs["cmax"] is not None:
            e = f"({e} > {lit(n.attrs['cmax'])}) ? {lit(n.attrs['cmax'])} : {e}"
        if n.attrs["cmin"] is not None:
            e = f"({a[0]} < {lit(n.attrs['cmin'])}) ? {lit(n.attrs['cmin'])} : {e}"
        return e
    if op == "max":
        return f"({a[0]} > {a[1]}) ? {a[0]} : {a[1]}"
    if op == "selpos":
        return f"({a[0]} > 0) ? {a[1]} : {a[2]}"
    if op == "rom":
        return f"rom_{n.attrs['rom']}({a[0]})"
    raise AssertionError(f"no Verilog for netlist op {op}")


def write_verilog(design: Design, header: str = "") -> str:
    """The whole design as one Verilog-2001 module (text)."""
    nl, top = design.nl, design.opts.top
    casts = _Casts()
    decls: list[str] = []
    assigns: list[str] = []
    regs: list[str] = []
    live = live_nets(nl)
    ii = nl.ii
    for n in nl.nets:
        if not live[n.id]:
            continue
        w = n.width
        if n.op == "reg":
            decls.append(f"  reg signed [{w - 1}:0] n{n.id};")
            regs.append(f"    n{n.id} <= n{n.args[0]};")
            continue
        if n.op == "hold":  # loads on its vector's group-th clock (see Netlist.hold)
            when = (nl.nets[n.args[0]].stage + n.attrs["group"]) % ii
            decls.append(f"  reg signed [{w - 1}:0] n{n.id};")
            regs.append(f"    if (ls_phase == {_phase_lit(when, ii)}) n{n.id} <= n{n.args[0]};")
            continue
        decls.append(f"  wire signed [{w - 1}:0] n{n.id};")
        if n.op == "in":
            t = n.attrs["type"]
            sel = f"{n.attrs['port']}[{n.attrs['index'] * t.width} +: {t.width}]"
            rhs = f"$signed({sel})" if t.signed else f"$signed({{1'b0, {sel}}})"
        elif n.op == "phase":
            rhs = f"$signed({{1'b0, {_phase_at(n.stage, ii)}}})"
        else:
            rhs = _expr(nl, n, casts)
        assigns.append(f"  assign n{n.id} = {rhs};")
    ports = ["  input wire clk,", "  input wire rst,", "  input wire valid_in,"]
    if ii > 1:
        ports.append(f"  output wire ready_in,  // a vector is accepted every {ii} clocks")
    for p in design.inputs.values():
        bits = p["type"].width * max(1, _size(p["shape"]))
        ports.append(f"  input wire [{bits - 1}:0] {p['port']},  // {_describe(p)}")
    ports.append("  output wire valid_out,")
    outs = list(design.outputs.values())
    for i, p in enumerate(outs):
        bits = p["type"].width * max(1, _size(p["shape"]))
        comma = "," if i < len(outs) - 1 else ""
        ports.append(f"  output wire [{bits - 1}:0] {p['port']}{comma}  // {_describe(p)}")
    out_assigns = []
    for name, p in nl.ports_out.items():
        wt = p["type"].width
        for i, s in enumerate(p["sigs"]):
            out_assigns.append(f"  assign {name}[{i * wt} +: {wt}] = n{s.net};")
    lat = design.latency
    valid: list[str] = []
    accept = "valid_in & ready_in" if ii > 1 else "valid_in"
    if lat == 0:
        valid.append(f"  assign valid_out = {accept};")
    else:
        valid += [
            f"  reg [{lat}:1] valid_pipe;",
            "  always @(posedge clk) begin",
            f"    if (rst) valid_pipe <= {lat}'d0;",
            "    else valid_pipe <= "
            + (f"{{valid_pipe[{lat - 1}:1], {accept}}};" if lat > 1 else f"{accept};"),
            "  end",
            f"  assign valid_out = valid_pipe[{lat}];",
        ]
    roms = [_rom_function(k, e) for k, e in enumerate(nl.roms)]
    # render assigns first so every cast function is known
    text = [
        header,
        f"module {top} (",
        *ports,
        ");",
        "",
        *casts.text,
        *roms,
        "",
        *_phase_counter(ii),
        *decls,
        "",
        *assigns,
        "",
    ]
    if regs:
        text += ["  always @(posedge clk) begin", *regs, "  end", ""]
    text += [*valid, "", *out_assigns, "endmodule", ""]
    return "\n".join(text)


def _phase_bits(ii: int) -> int:
    return max(1, (ii - 1).bit_length())


def _phase_lit(v: int, ii: int) -> str:
    return f"{_phase_bits(ii)}'d{v}"


def _phase_at(stage: int, ii: int) -> str:
    """(ls_phase - stage) mod II: the group index of the vector at ``stage``."""
    d = stage % ii
    if d == 0:
        return "ls_phase"
    return (
        f"((ls_phase >= {_phase_lit(d, ii)}) ? ls_phase - {_phase_lit(d, ii)} "
        f": ls_phase + {_phase_lit(ii - d, ii)})"
    )


def _phase_counter(ii: int) -> list[str]:
    """The free-running phase counter of a time-multiplexed design (none at II = 1)."""
    if ii == 1:
        return []
    b = _phase_bits(ii)
    return [
        f"  // reuse factor: one vector every {ii} clocks; ls_phase counts the clocks since the last",
        "  reg [" + str(b - 1) + ":0] ls_phase;",
        "  always @(posedge clk) begin",
        f"    if (rst || ls_phase == {_phase_lit(ii - 1, ii)}) ls_phase <= {_phase_lit(0, ii)};",
        f"    else ls_phase <= ls_phase + {_phase_lit(1, ii)};",
        "  end",
        f"  assign ready_in = (ls_phase == {_phase_lit(0, ii)});",
    ]


def _size(shape) -> int:
    s = 1
    for d in shape:
        s *= int(d)
    return s


def _describe(p) -> str:
    return f"{_size(p['shape'])} x {p['type']} (shape {tuple(p['shape'])}, element i at [i*{p['type'].width} +: {p['type'].width}])"
