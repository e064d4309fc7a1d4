"""Streaming convolutions (``--io stream``): one pixel per clock through line buffers.

The fully parallel lowering builds every output pixel of a convolution in its own
hardware, so a CNN's area grows with the image. Here the front of a CNN becomes a
chain of *stages*, one per window layer (conv, max/average pool) plus the
per-pixel layers that follow it (activations, batchnorm, quant):

* the input arrives as a stream of pixels in raster order (row by row), all
  channels of one pixel per beat (element ``c`` at ``[c*W +: W]``), marked by
  ``valid_in``. The interface is **valid only**: no back-pressure; a beat may come
  every clock or with gaps, and images may follow each other back to back;
* a stage keeps the last ``(kh-1)*width + kw-1`` pixels in one shift register (the
  line buffers: SRLs on Xilinx parts) and reads its ``kh x kw`` window from fixed
  taps; a row/column counter says when the window is complete and on the stride grid
  ('valid' windows only: padding would need beats that never arrive);
* one datapath per stage computes one output pixel from its window: the ordinary
  emitters (:mod:`lightspeed.firmware.verilog.emit_conv` etc., the same MAC
  contract, patch order (kernel row, kernel col, channel)) lowered once for a
  window-sized input, pipelined, and instantiated once — not once per pixel;
* the layers after the last stage (flatten, dense, global pooling, softmax ...)
  form the *tail*: the last feature map is collected in a shift register and the
  tail runs fully parallel once per image, when the image's last pixel arrives.

So area grows with kernel size x channels (plus line buffers of width x channels),
not with the image; the initiation interval is one image per ``height x width``
input beats. Each datapath is an ordinary lowered :class:`Design`, written by
:func:`write_verilog` as its own module; this module adds the stream glue.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from lightspeed.errors import UnsupportedOpError
from lightspeed.firmware.config import FirmwareOptions
from lightspeed.firmware.verilog.lowering import Design, lower, port_name
from lightspeed.firmware.verilog.writer import write_verilog
from lightspeed.ir import Graph, infer_shapes
from lightspeed.ir.graph import Node
from lightspeed.quantize.model import QuantizedModel

WINDOW_OPS = ("conv", "maxpool", "avgpool")
# element-wise (per-channel at most) layers: one pixel in, one pixel out
PIXEL_OPS = (
    "relu", "leaky_relu", "clip", "hard_swish", "quant", "fixed_quant", "batchnorm",
    "sigmoid", "tanh",
)  # fmt: skip
FORM = "--io stream"
# a streamed dense trades P constant products per weight column for one general multiplier
# and a weight ROM: below this many pixels the parallel dense on the collected map is cheaper
DENSE_MIN_PIXELS = 9


@dataclass
class Stage:
    """One streaming layer group: a window layer (or none: 1x1) and the per-pixel layers after it."""

    name: str  # module name
    nodes: list[str]
    in_tensor: str
    out_tensor: str
    in_shape: tuple[int, int, int]  # (C, H, W); 1-D tensors as H = 1
    out_shape: tuple[int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    design: Design  # the datapath: one window in, one pixel out

    @property
    def buffer_pixels(self) -> int:
        """Pixels held in the line buffers (the current one is tap 0, not stored)."""
        kh, kw = self.kernel
        return (kh - 1) * self.in_shape[2] + kw - 1

    @property
    def pixel_bits(self) -> int:
        return self.in_shape[0] * self.design.inputs[self.in_tensor]["type"].width


@dataclass
class DenseStage:
    """Flatten + dense over the streamed feature map, one pixel per beat.

    Pixel ``p`` contributes ``sum_c (accum_t)(x[c] * w[c*P + p, j])`` to output ``j``
    (weights read from a ROM by the pixel index, one multiplier per channel and output);
    an accumulator per output adds the beats. Bit-exact with the contract's sum in input
    order only where the order cannot matter: the accumulator provably never overflows,
    or it wraps (see :func:`_order_free`); otherwise the dense stays in the parallel tail.
    """

    name: str
    nodes: list[str]
    in_tensor: str
    acc_tensor: str  # the accumulator values handed to the tail (type acc_t)
    channels: int
    pixels: int
    acc_t: Any
    acc0: list[int]  # the bias on the accumulator grid, per output
    design: Design  # one beat: (pixel, index) -> partial sums


@dataclass
class StreamDesign:
    """A streaming design: stages, an optional parallel tail, ports."""

    opts: FirmwareOptions
    stages: list[Stage]
    tail: Design | None
    tail_in: str | None  # the tensor the tail collects (the last stage's output)
    inputs: dict[str, dict[str, Any]]  # tensor -> {"port", "type", "shape"}: one pixel per beat
    outputs: dict[str, dict[str, Any]]
    pixels_in: int  # beats per image
    pixels_out: int  # output beats per image (1 with a tail)
    dense: DenseStage | None = None  # flatten + dense accumulated pixel by pixel

    @property
    def latency(self) -> int:
        """Cycles from an image's last input beat to its (last) result."""
        lat = sum(s.design.latency for s in self.stages)
        if self.dense is not None:
            lat += self.dense.design.latency + 1  # the accumulator register
        if self.tail is not None:
            lat += self.tail.latency
        return lat

    @property
    def ii(self) -> int:
        """Cycles per image at one input beat per clock."""
        return self.pixels_in

    def layers(self) -> dict[str, list[str]]:
        out = {s.name: s.nodes for s in self.stages}
        if self.dense is not None:
            out[self.dense.name] = self.dense.nodes
        if self.tail is not None:
            out[f"{self.opts.top}_tail"] = list(self.tail.layer_stages)
        return out


def _spatial(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) == 2:
        return (int(shape[0]), 1, int(shape[1]))
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def _refuse(node: Node, what: str, todo: str) -> UnsupportedOpError:
    return UnsupportedOpError(
        f"{FORM}: layer {node.name!r} ({node.op}) {what}; {todo}, or generate with --io parallel"
    )


def _window(node: Node, shape: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(kernel, stride) as 2-D (1-D layers have kh = sh = 1); refuses what streaming lacks."""
    from lightspeed.ops.conv import conv_attrs
    from lightspeed.ops.pooling import pool_attrs

    k: Sequence[int]
    if node.op == "conv":
        k, strides, pads, dil, _ = conv_attrs(node)
        if any(d != 1 for d in dil):
            raise _refuse(node, f"has dilations {dil}", "use dilation 1")
    else:
        k, strides, pads = pool_attrs(node, shape)
    if any(pads):
        raise _refuse(
            node,
            f"has padding {list(pads)} ('same'); streaming builds 'valid' windows only",
            "train with padding='valid' (or pad the input image yourself)",
        )
    if len(k) == 1:
        return (1, int(k[0])), (1, int(strides[0]))
    if len(k) != 2:
        raise _refuse(node, f"is {len(k)}-D", "use Conv1D/Conv2D")
    return (int(k[0]), int(k[1])), (int(strides[0]), int(strides[1]))


def _window_node(node: Node) -> Node:
    """The layer applied to one window: no padding, stride 1 (one output pixel)."""
    n = copy.copy(node)
    n.attrs = dict(node.attrs)
    nd = (
        len(node.params["weight"].shape) - 2
        if node.op == "conv"
        else len(node.attrs["kernel_shape"])
    )
    n.attrs["pads"] = [0] * (2 * nd)
    n.attrs["strides"] = [1] * nd
    return n


def _sub_model(
    q: QuantizedModel, nodes: list[Node], inp: str, shape, out: str, prec=None, types=None
) -> QuantizedModel:
    """The layers ``nodes`` as a model of their own (input ``inp`` of ``shape``), to lower."""
    g = infer_shapes(Graph(f"{q.graph.name}_part", {inp: tuple(shape)}, [out], nodes))
    names = {n.name for n in nodes}
    types = dict(types or {})
    tensors = {inp, *(t for n in nodes for t in n.outputs)} - set(types)
    return QuantizedModel(
        g,
        {**{k: v for k, v in q.precision.items() if k in names}, **(prec or {})},
        {k: v for k, v in q.qparams.items() if k in names},
        {**{t: q.tensor_types[t] for t in tensors}, **types},
        options=q.options,
        default=q.default,
    )


def _order_free(w: np.ndarray, x_t, w_t, acc_t, acc0: np.ndarray) -> bool:
    """True when the contract's sum cannot depend on the order of its products: every
    partial sum provably fits the accumulator (worst case over the input type), or it wraps."""
    if acc_t.overflow == "WRAP":
        return True
    w = w.astype(object)
    a, b = w * x_t.min_int, w * x_t.max_int
    plo, phi = np.minimum(a, b), np.maximum(a, b)
    s = x_t.frac + w_t.frac - acc_t.frac
    if s > 0:
        plo, phi = plo >> s, (phi >> s) + (0 if acc_t.rounding == "TRN" else 1)
    else:
        plo, phi = plo << -s, phi << -s
    lo = np.minimum(acc0, 0) + np.minimum(plo, 0).sum(axis=0)
    hi = np.maximum(acc0, 0) + np.maximum(phi, 0).sum(axis=0)
    return bool(lo.min() >= acc_t.min_int and hi.max() <= acc_t.max_int)


def _acc0(q: QuantizedModel, dense: Node) -> np.ndarray:
    """The dense layer's bias on its accumulator grid (the contract's starting value)."""
    from lightspeed.fixed import requantize

    prec, bias = q.precision[dense.name], q.qparams[dense.name].get("bias")
    n_out = q.qparams[dense.name]["weight"].shape[1]
    if bias is None or prec.get("bias") is None:
        return np.zeros(n_out, dtype=object)
    acc = requantize(np.asarray(bias, dtype=object), prec["bias"].frac, prec["accum"])
    return acc.astype(object)


def dense_streams(q: QuantizedModel, tail: list[Node]) -> bool:
    """Whether the tail starts with flatten + dense that can accumulate pixel by pixel."""
    g = q.graph
    if len(tail) < 2 or tail[0].op != "flatten" or tail[1].op != "dense":
        return False
    flat, dense = tail[0], tail[1]
    if dense.inputs != flat.outputs or len(g.consumers(flat.outputs[0])) != 1:
        return False
    prec = q.precision[dense.name]
    acc_t = prec.get("accum")
    pixels = math.prod(g.shapes[flat.inputs[0]][1:])
    if acc_t is None or not acc_t.signed or pixels < DENSE_MIN_PIXELS:
        return False
    w = np.asarray(q.qparams[dense.name]["weight"])
    return _order_free(w, q.tensor_types[flat.outputs[0]], prec["weight"], acc_t, _acc0(q, dense))


def _dense_stage(q: QuantizedModel, tail: list[Node], cur: str, shape, opts) -> DenseStage | None:
    """Flatten + dense streamed pixel by pixel, where that is bit-exact (else None)."""
    from lightspeed.firmware.netlist import Netlist, Timing, signed_width
    from lightspeed.fixed import FixedType

    if not dense_streams(q, tail) or tail[0].inputs != [cur]:
        return None
    flat, dense = tail[0], tail[1]
    prec = q.precision[dense.name]
    w = np.asarray(q.qparams[dense.name]["weight"])
    x_t, w_t, acc_t = q.tensor_types[flat.outputs[0]], prec["weight"], prec["accum"]
    c, h, wd = _spatial(tuple(shape))
    n_pix, n_out = h * wd, w.shape[1]
    acc0 = _acc0(q, dense)
    name = f"{opts.top}_dense"
    nl = Netlist(Timing(period=opts.clock_period))
    nl.layer = dense.name
    xs = [nl.input("in_pix", k, x_t) for k in range(c)]
    ib = _cbits(n_pix)
    idx_t = FixedType(ib, ib, signed=False)
    idx = nl.input("in_idx", 0, idx_t)
    F = acc_t.frac
    wraps = acc_t.overflow == "WRAP"
    wmat = w.reshape(c, n_pix, n_out)  # flatten order of (C, H, W): row c * P + p
    partial = np.empty(n_out, dtype=object)
    for j in range(n_out):
        terms = []
        for k in range(c):
            col = [int(v) for v in wmat[k, :, j]]
            if not any(col):
                continue
            table = np.array(col + [0] * ((1 << ib) - n_pix), dtype=object)
            wk = nl.rom(idx, table, w_t.frac)
            prod = nl.mul(xs[k], wk)
            if prod.frac > F:  # the contract's (accum_t)(x * w): rounded per product
                prod = nl.cast(prod, F, acc_t.rounding, acc_t if wraps else None)
            terms.append((prod, False))
        tot = (
            nl.sum(terms, wrap_frac=(acc_t.width, F) if wraps else None)
            if terms
            else nl.const(0, F)
        )
        partial[j] = nl.cast(tot, F, "TRN", None) if tot.frac != F else tot
    lo = min(nl.net(v).lo for v in partial)
    hi = max(nl.net(v).hi for v in partial)
    pw = max(signed_width(lo, hi), 2)
    part_t = FixedType(pw, pw - F, signed=True)
    nl.add_output("out_partial", part_t, partial)
    latency = nl.finish()
    design = Design(
        nl,
        replace(opts, top=name),
        {"pix": {"port": "in_pix", "type": x_t, "shape": (c,)},
         "idx": {"port": "in_idx", "type": idx_t, "shape": (1,)}},
        {"partial": {"port": "out_partial", "type": part_t, "shape": (n_out,)}},
        latency,
        {dense.name: latency},
    )  # fmt: skip
    return DenseStage(
        name, [flat.name, dense.name], cur, f"{dense.name}_acc", c, n_pix, acc_t,
        [int(v) for v in acc0], design,
    )  # fmt: skip


def plan(q: QuantizedModel) -> tuple[list[tuple[Node | None, list[Node]]], list[Node]]:
    """Split the graph into streaming groups (window layer, per-pixel layers) and the tail.

    Raises :class:`UnsupportedOpError` naming the layer for what streaming cannot do.
    """
    g = q.graph
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise UnsupportedOpError(
            f"{FORM} needs one image input and one output; model {g.name!r} has inputs "
            f"{list(g.inputs)} and outputs {g.outputs}. Generate with --io parallel"
        )
    ((inp, shape),) = g.inputs.items()
    if len(shape) not in (2, 3):
        raise UnsupportedOpError(
            f"{FORM} streams images: the input {inp!r} must be (channels, width) or "
            f"(channels, height, width), not {tuple(shape)}. Generate with --io parallel"
        )
    groups: list[tuple[Node | None, list[Node]]] = []
    cur = inp
    nodes = list(g.nodes)
    i = 0
    while i < len(nodes):
        node = nodes[i]
        if node.op not in WINDOW_OPS and node.op not in PIXEL_OPS:
            break  # the tail starts here
        users = [n.name for n in g.consumers(cur)]
        if node.inputs != [cur] or len(users) != 1:
            what = (
                f"reads {node.inputs} while the stream carries {cur!r} (a merge)"
                if node.inputs != [cur]
                else f"shares its input {cur!r} with {[u for u in users if u != node.name]} (a branch)"
            )
            raise _refuse(node, what, "streaming handles a chain of layers (no skip connections)")
        if node.op in WINDOW_OPS:
            groups.append((node, []))
        else:
            if not groups:
                groups.append((None, []))
            groups[-1][1].append(node)
        cur = node.outputs[0]
        i += 1
    if not groups or all(w is None for w, _ in groups):
        raise UnsupportedOpError(
            f"{FORM} is for convolutional networks; model {g.name!r} has no Conv or pooling "
            "layer at its input. Generate with --io parallel (the default)"
        )
    tail = nodes[i:]
    known = {cur}
    for node in tail:
        if any(t not in known for t in node.inputs):
            raise _refuse(
                node,
                f"reads {[t for t in node.inputs if t not in known]} from the streamed layers",
                "only the last streamed feature map reaches the layers after flatten",
            )
        known.update(node.outputs)
        if node.op in WINDOW_OPS:
            raise _refuse(
                node,
                f"follows {tail[0].name!r} ({tail[0].op}), which streaming does not handle",
                "put convolutions and pooling before flatten/dense",
            )
    return groups, tail


def build_stream(q: QuantizedModel, opts: FirmwareOptions | None = None) -> StreamDesign:
    """Lower ``q`` for streaming: one datapath per stage plus the parallel tail."""
    opts = opts or FirmwareOptions(io="stream")
    groups, tail_nodes = plan(q)
    g = q.graph
    ((inp, in_shape),) = g.inputs.items()
    cur, shape = inp, tuple(in_shape)
    stages: list[Stage] = []
    for k, (win, pix) in enumerate(groups):
        c, h, w = _spatial(shape)
        if win is not None:
            kernel, stride = _window(win, shape)
            if kernel[0] > h or kernel[1] > w:
                raise _refuse(
                    win, f"has kernel {kernel} larger than its input {shape}", "fix the model"
                )
            first = [_window_node(win)]
            win_shape = (c, kernel[0], kernel[1]) if len(shape) == 3 else (c, kernel[1])
        else:
            kernel, stride = (1, 1), (1, 1)
            first = []
            win_shape = (c, 1, 1) if len(shape) == 3 else (c, 1)
        members = first + list(pix)
        out = members[-1].outputs[0]
        sub = _sub_model(q, members, cur, win_shape, out)
        name = f"{opts.top}_s{k}"
        design = lower(sub, replace(opts, top=name))
        out_full = tuple(g.shapes[out])
        stages.append(
            Stage(
                name,
                [n.name for n in ([win] if win is not None else []) + list(pix)],
                cur,
                out,
                _spatial(shape),
                _spatial(out_full),
                kernel,
                stride,
                design,
            )
        )
        cur, shape = out, out_full
    c, h, w = _spatial(shape)
    in_t = q.tensor_types[inp]
    inputs = {inp: {"port": port_name("in", inp), "type": in_t, "shape": tuple(in_shape)}}
    if tail_nodes:
        dense = _dense_stage(q, tail_nodes, cur, shape, opts)
        if dense is not None:
            dnode = g.node(dense.nodes[-1])
            res_t = q.precision[dnode.name]["result"]
            cast = Node(
                f"{dnode.name}_result", "quant", [dense.acc_tensor], [dnode.outputs[0]],
                types={"result": res_t},
            )  # fmt: skip
            rest = [cast, *tail_nodes[2:]]
            sub = _sub_model(
                q, rest, dense.acc_tensor, (len(dense.acc0),), g.outputs[0],
                {cast.name: {"result": res_t}}, {dense.acc_tensor: dense.acc_t},
            )  # fmt: skip
            tail_in = dense.acc_tensor
        else:
            sub = _sub_model(q, tail_nodes, cur, shape, g.outputs[0])
            tail_in = cur
        tail = lower(sub, replace(opts, top=f"{opts.top}_tail"))
        outputs = {t: dict(d) for t, d in tail.outputs.items()}
        return StreamDesign(
            opts, stages, tail, tail_in, inputs, outputs, _pixels(in_shape), 1, dense
        )
    out_t = q.tensor_types[cur]
    outputs = {cur: {"port": port_name("out", cur), "type": out_t, "shape": shape}}
    return StreamDesign(opts, stages, None, None, inputs, outputs, _pixels(in_shape), h * w)


def _pixels(shape) -> int:
    _, h, w = _spatial(tuple(shape))
    return h * w


# ---------------------------------------------------------------------------
# Verilog


def _cbits(n: int) -> int:
    return max(1, (max(n, 1) - 1).bit_length())


def _mask(n: int, ok) -> str:
    """An n-bit constant whose bit i says ``ok(i)`` (rows/columns that complete a window)."""
    v = sum(1 << i for i in range(n) if ok(i))
    return f"{n}'b{v:0{n}b}"


def _stage_glue(s: Stage, idx: int, src_valid: str, src_pix: str) -> tuple[list[str], str, str]:
    """Counters, line buffer and window taps of one stage; returns (lines, valid, pixel)."""
    c, h, w = s.in_shape
    kh, kw = s.kernel
    sh, sw = s.stride
    oh, ow = s.out_shape[1], s.out_shape[2]
    pb = s.pixel_bits
    eb = pb // c
    p = f"s{idx}_"
    lines = [
        f"  // stage {idx}: {', '.join(s.nodes)} ({kh}x{kw} window, stride {sh}x{sw}, input {h}x{w}x{c})"
    ]
    buf = s.buffer_pixels
    if (kh, kw) == (1, 1):
        win_valid = src_valid
    else:
        rb, cb = _cbits(h), _cbits(w)
        lines += [
            f"  reg [{rb - 1}:0] {p}row;",
            f"  reg [{cb - 1}:0] {p}col;",
            "  always @(posedge clk) begin",
            f"    if (rst) begin {p}row <= 0; {p}col <= 0; end",
            f"    else if ({src_valid}) begin",
            f"      if ({p}col == {w - 1}) begin",
            f"        {p}col <= 0;",
            f"        {p}row <= ({p}row == {h - 1}) ? {rb}'d0 : {p}row + {rb}'d1;",
            f"      end else {p}col <= {p}col + {cb}'d1;",
            "    end",
            "  end",
            # which rows / columns end a window on the stride grid
            f"  wire [{h - 1}:0] {p}rows_ok = {_mask(h, lambda r: r >= kh - 1 and (r - kh + 1) % sh == 0 and (r - kh + 1) // sh < oh)};",
            f"  wire [{w - 1}:0] {p}cols_ok = {_mask(w, lambda q: q >= kw - 1 and (q - kw + 1) % sw == 0 and (q - kw + 1) // sw < ow)};",
            f"  wire {p}win_valid = {src_valid} & {p}rows_ok[{p}row] & {p}cols_ok[{p}col];",
        ]
        win_valid = f"{p}win_valid"
    if buf > 0:
        # one shift register of whole pixels (no reset: maps to SRLs); tap d-1 = d beats ago
        shift = f"{{{p}lb[{(buf - 1) * pb - 1}:0], {src_pix}}}" if buf > 1 else src_pix
        lines += [
            f"  reg [{buf * pb - 1}:0] {p}lb;  // line buffers: {buf} pixels",
            f"  always @(posedge clk) if ({src_valid}) {p}lb <= {shift};",
        ]
    n_in = c * kh * kw
    lines.append(f"  wire [{n_in * eb - 1}:0] {p}win;")
    k = 0
    for ch in range(c):  # the window tensor's layout: (C, kh, kw)
        for i in range(kh):
            for j in range(kw):
                d = (kh - 1 - i) * w + (kw - 1 - j)
                src = src_pix if d == 0 else f"{p}lb"
                off = ch * eb + (0 if d == 0 else (d - 1) * pb)
                lines.append(f"  assign {p}win[{k * eb} +: {eb}] = {src}[{off} +: {eb}];")
                k += 1
    out_port = next(iter(s.design.outputs.values()))
    ob = out_port["type"].width * math.prod(out_port["shape"])
    in_port = s.design.inputs[s.in_tensor]["port"]
    lines += [
        f"  wire {p}valid;",
        f"  wire [{ob - 1}:0] {p}pix;",
        f"  {s.name} u_{s.name} (.clk(clk), .rst(rst), .valid_in({win_valid}), .{in_port}({p}win),"
        f" .valid_out({p}valid), .{out_port['port']}({p}pix));",
        "",
    ]
    return lines, f"{p}valid", f"{p}pix"


def write_stream_verilog(sd: StreamDesign, header: str = "") -> str:
    """The datapath modules, then the top module that streams pixels through them."""
    top = sd.opts.top
    mods = [write_verilog(s.design) for s in sd.stages]
    if sd.dense is not None:
        mods.append(write_verilog(sd.dense.design))
    if sd.tail is not None:
        mods.append(write_verilog(sd.tail))
    ((_, pin),) = sd.inputs.items()
    c_in = _spatial(pin["shape"])[0]
    in_bits = c_in * pin["type"].width
    ((_, pout),) = sd.outputs.items()
    if sd.tail is None:
        out_bits = _spatial(pout["shape"])[0] * pout["type"].width
        what = f"one output pixel per beat: {_spatial(pout['shape'])[0]} x {pout['type']}"
    else:
        out_bits = pout["type"].width * math.prod(pout["shape"])
        what = f"{math.prod(pout['shape'])} x {pout['type']} (shape {tuple(pout['shape'])}), once per image"
    body = [
        header,
        f"// Streaming top: {sd.pixels_in} input beats per image (raster order, element c of a pixel",
        f"// at [c*W +: W]); valid only (no back-pressure); II = {sd.ii} cycles per image.",
        f"module {top} (",
        "  input wire clk,",
        "  input wire rst,",
        "  input wire valid_in,",
        f"  input wire [{in_bits - 1}:0] {pin['port']},  // one pixel: {c_in} x {pin['type']}",
        "  output wire valid_out,",
        f"  output wire [{out_bits - 1}:0] {pout['port']}  // {what}",
        ");",
    ]
    valid, pix = "valid_in", pin["port"]
    for i, s in enumerate(sd.stages):
        lines, valid, pix = _stage_glue(s, i, valid, pix)
        body += lines
    if sd.tail is None:
        body += [f"  assign valid_out = {valid};", f"  assign {pout['port']} = {pix};"]
    elif sd.dense is not None and sd.tail_in is not None:
        lines, valid, pix = _dense_glue(sd.dense, valid, pix)
        body += lines + _tail_call(sd.tail, valid, pix, sd.tail_in)
    else:
        body += _tail_glue(sd, valid, pix)
    body += ["endmodule", ""]
    return "\n".join(mods) + "\n" + "\n".join(body)


def _tail_glue(sd: StreamDesign, valid: str, pix: str) -> list[str]:
    """Collect the last feature map (shift register), fire the tail on an image's last pixel."""
    tail = sd.tail
    assert tail is not None and sd.tail_in is not None
    last = sd.stages[-1]
    c, h, w = last.out_shape
    n = h * w
    tin = tail.inputs[sd.tail_in]
    eb = tin["type"].width
    pb = c * eb
    lines = [
        f"  // tail: collect the {h}x{w}x{c} feature map, run the parallel layers once per image"
    ]
    fire = valid
    if n > 1:
        cb = _cbits(n)
        lines += [
            f"  reg [{cb - 1}:0] t_count;",
            "  always @(posedge clk) begin",
            "    if (rst) t_count <= 0;",
            f"    else if ({valid}) t_count <= (t_count == {n - 1}) ? {cb}'d0 : t_count + {cb}'d1;",
            "  end",
            f"  reg [{(n - 1) * pb - 1}:0] t_map;",
            f"  always @(posedge clk) if ({valid}) t_map <= "
            + (f"{{t_map[{(n - 2) * pb - 1}:0], {pix}}};" if n > 2 else f"{pix};"),
            f"  wire t_fire = {valid} & (t_count == {n - 1});",
        ]
        fire = "t_fire"
    lines.append(f"  wire [{c * n * eb - 1}:0] t_in;")
    for ch in range(c):  # the tensor's layout: (C, H, W); pixel p arrived n-1-p beats ago
        for pp in range(n):
            d = n - 1 - pp
            src = pix if d == 0 else "t_map"
            off = ch * eb + (0 if d == 0 else (d - 1) * pb)
            lines.append(f"  assign t_in[{(ch * n + pp) * eb} +: {eb}] = {src}[{off} +: {eb}];")
    return lines + _tail_call(tail, fire, "t_in", sd.tail_in)


def _tail_call(tail: Design, fire: str, data: str, tensor: str) -> list[str]:
    ((_, pout),) = tail.outputs.items()
    port = tail.inputs[tensor]["port"]
    return [
        f"  {tail.opts.top} u_tail (.clk(clk), .rst(rst), .valid_in({fire}), .{port}({data}),"
        f" .valid_out(valid_out), .{pout['port']}({pout['port']}));",
    ]


def _dense_glue(d: DenseStage, valid: str, pix: str) -> tuple[list[str], str, str]:
    """Pixel index into the datapath, one accumulator per output, fire on the last pixel."""
    from lightspeed.firmware.verilog.writer import lit

    n = len(d.acc0)
    ib = _cbits(d.pixels)
    aw = d.acc_t.width
    part = d.design.outputs["partial"]["type"].width
    lines = [
        f"  // {', '.join(d.nodes)}: accumulated over {d.pixels} pixels, {n} outputs",
        f"  reg [{ib - 1}:0] d_idx;  // pixel index of the beat entering the datapath",
        f"  reg [{ib - 1}:0] d_cnt;  // pixel index of the partial sums leaving it",
        "  wire d_valid;",
        f"  wire [{n * part - 1}:0] d_part;",
        f"  {d.name} u_{d.name} (.clk(clk), .rst(rst), .valid_in({valid}), .in_pix({pix}),"
        " .in_idx(d_idx), .valid_out(d_valid), .out_partial(d_part));",
        "  always @(posedge clk) begin",
        "    if (rst) begin d_idx <= 0; d_cnt <= 0; end",
        "    else begin",
        f"      if ({valid}) d_idx <= (d_idx == {d.pixels - 1}) ? {ib}'d0 : d_idx + {ib}'d1;",
        f"      if (d_valid) d_cnt <= (d_cnt == {d.pixels - 1}) ? {ib}'d0 : d_cnt + {ib}'d1;",
        "    end",
        "  end",
        "  reg d_fire;",
        f"  always @(posedge clk) d_fire <= rst ? 1'b0 : d_valid & (d_cnt == {d.pixels - 1});",
        f"  wire [{n * aw - 1}:0] d_acc_bus;",
    ]
    for j, a0 in enumerate(d.acc0):
        # the true sums fit acc_t (or wrap there), so arithmetic modulo 2**aw is exact
        lines += [
            f"  wire signed [{part - 1}:0] d_p{j} = d_part[{j * part} +: {part}];",
            f"  reg signed [{aw - 1}:0] d_a{j};",
            f"  always @(posedge clk) if (d_valid) d_a{j} <= "
            f"((d_cnt == 0) ? {lit(a0, aw + 1)} : d_a{j}) + d_p{j};",
            f"  assign d_acc_bus[{j * aw} +: {aw}] = d_a{j};",
        ]
    return lines, "d_fire", "d_acc_bus"


# ---------------------------------------------------------------------------
# pixels <-> tensors (the testbench feeds and collects beats)


def to_beats(x: np.ndarray, shape) -> np.ndarray:
    """(N, C, [H,] W) tensors -> (N * H * W, C) beats in raster order."""
    c, h, w = _spatial(tuple(shape))
    x = np.asarray(x).reshape(-1, c, h * w)
    return np.ascontiguousarray(x.transpose(0, 2, 1)).reshape(-1, c)


def from_beats(y: np.ndarray, n: int, shape) -> np.ndarray:
    """(N * H * W, C) beats -> (N, C, [H,] W)."""
    c, h, w = _spatial(tuple(shape))
    y = np.asarray(y).reshape(n, h * w, c)
    return np.ascontiguousarray(y.transpose(0, 2, 1)).reshape(n, *shape)


# ---------------------------------------------------------------------------
# estimate


def estimate_stream(sd: StreamDesign):
    """Per stage: its datapath (one kernel instance) plus its line buffers; then the tail."""
    from lightspeed.firmware.estimate import COEF, Estimate, estimate_design

    est = Estimate(latency=sd.latency)
    feats: dict[str, float] = {}
    parts: list[tuple[str, Design, float, float]] = []
    for s in sd.stages:
        # a line buffer is a tapped shift chain: the taps are flip-flops, each untapped run
        # of >= 3 pixels between two window rows becomes one SRL per bit per 32 stages
        kh, kw = s.kernel
        gap = s.in_shape[2] - kw
        srl = gap >= 3 and kh > 1
        srl_luts = (kh - 1) * s.pixel_bits * math.ceil(gap / 32) if srl else 0
        ff_stages = s.buffer_pixels - ((kh - 1) * gap if srl else 0)
        ff = ff_stages * s.pixel_bits + 32.0  # taps, row/column counters
        lut = COEF.get("srl_bits", 1.0) * srl_luts + 20.0  # counters, window-valid logic
        parts.append((s.name, s.design, lut, ff))
    if sd.dense is not None:  # one accumulator (adder + register) per output
        acc_bits = len(sd.dense.acc0) * sd.dense.acc_t.width
        parts.append((sd.dense.name, sd.dense.design, float(acc_bits), float(acc_bits + 16)))
    if sd.tail is not None:
        c, h, w = sd.stages[-1].out_shape
        bits = 0 if sd.dense else c * h * w * next(iter(sd.tail.inputs.values()))["type"].width
        parts.append((f"{sd.opts.top}_tail", sd.tail, 10.0, float(bits)))
    for name, d, lut, ff in parts:
        e = estimate_design(d)
        row = {"lut": e.lut + lut, "ff": e.ff + ff, "dsp": e.dsp}
        est.per_layer[name] = row
        est.carry += e.carry
        for k, v in e.features.items():
            feats[k] = feats.get(k, 0.0) + v
    est.lut = sum(r["lut"] for r in est.per_layer.values())
    est.ff = sum(r["ff"] for r in est.per_layer.values())
    est.dsp = sum(r["dsp"] for r in est.per_layer.values())
    est.features = feats
    return est


# ---------------------------------------------------------------------------
# the firmware directory's view


def stream_project(q: QuantizedModel, opts: FirmwareOptions, header: str):
    """(Verilog text, input ports, output ports, latency, manifest extras) for ``generate``."""
    sd = build_stream(q, opts)
    text = write_stream_verilog(sd, header)
    info = {
        "pixels_in": sd.pixels_in,
        "pixels_out": sd.pixels_out,
        "ii": sd.ii,
        "latency_after_last_beat": sd.latency,
        "stages": [
            {
                "module": s.name,
                "layers": s.nodes,
                "kernel": list(s.kernel),
                "stride": list(s.stride),
                "input": list(s.in_shape),
                "output": list(s.out_shape),
                "line_buffer_pixels": s.buffer_pixels,
                "latency": s.design.latency,
            }
            for s in sd.stages
        ],
        "dense": None
        if sd.dense is None
        else {
            "layers": sd.dense.nodes,
            "pixels": sd.dense.pixels,
            "latency": sd.dense.design.latency,
        },
        "tail": None
        if sd.tail is None
        else {"layers": list(sd.tail.layer_stages), "latency": sd.tail.latency},
    }
    extra = {"estimate": estimate_stream(sd).to_dict(), "stream": info}
    return text, sd.inputs, sd.outputs, sd.latency, extra


def stream_readme(m: dict[str, Any]) -> list[str]:
    """The FWDIR README body of a streaming design (ports, timing, stages)."""
    info = m["stream"]
    period = m["options"]["clock_period"]
    (pin,), (pout,) = m["inputs"], m["outputs"]
    c_in = int(pin["shape"][0])
    per_image = info["pixels_out"] == 1
    lines = [
        f"* Streaming (`--io stream`): an image is {info['pixels_in']} beats, one pixel per beat in "
        f"raster order (row by row), all {c_in} channels of the pixel in `{pin['port']}` "
        f"(channel c at bits `[c*W +: W]`, W = width of `{pin['type']}`).",
        "* Interface: valid only (no back-pressure): `valid_in` marks a beat; beats may come "
        "every clock or with gaps, images back to back.",
        f"* Initiation interval: {info['ii']} cycles per image at one beat per clock; the result "
        f"comes {m['latency']} cycles ({m['latency'] * period:g} ns) after the image's last beat.",
        (
            f"* Output `{pout['port']}`: tensor `{pout['tensor']}` {tuple(pout['shape'])} of "
            f"`{pout['type']}`, element i at `[i*W +: W]`, once per image with `valid_out`."
            if per_image
            else f"* Output `{pout['port']}`: the feature map `{pout['tensor']}` "
            f"{tuple(pout['shape'])} as a pixel stream in raster order, `valid_out` per pixel."
        ),
        "",
        "| stage | layers | window | stride | input (C, H, W) | line buffer (pixels) | latency |",
        "|---|---|---|---|---|---|---|",
    ]
    for st in info["stages"]:
        lines.append(
            f"| `{st['module']}` | {', '.join(st['layers'])} | {st['kernel'][0]}x{st['kernel'][1]} "
            f"| {st['stride'][0]}x{st['stride'][1]} | {tuple(st['input'])} "
            f"| {st['line_buffer_pixels']} | {st['latency']} |"
        )
    if info.get("dense"):
        d = info["dense"]
        lines.append(
            f"| dense (per pixel) | {', '.join(d['layers'])} | - | - | {d['pixels']} pixels | - "
            f"| {d['latency']} + 1 |"
        )
    if info.get("tail"):
        lines.append(
            f"| tail (parallel, once per image) | {', '.join(info['tail']['layers'])} | - | - | - "
            f"| - | {info['tail']['latency']} |"
        )
    lines += [
        "",
        "```",
        "lightspeed sim FWDIR --input X.npy --check   # Verilator, images fed pixel by pixel",
        "lightspeed synth FWDIR --part xcvu9p          # Yosys synth_xilinx",
        "```",
    ]
    est = m.get("estimate")
    if est:
        lines += [
            "",
            f"Analytic estimate: ~{est['lut']:.0f} LUT, {est['ff']:.0f} FF, {est['dsp']:.0f} DSP.",
        ]
    return lines
