"""A tiny word-level netlist: the common form every firmware emitter lowers to.

Each op emitter (``firmware/verilog/emit_*.py``) traces the fixed-point
arithmetic of its layer into this netlist (da4ml-style): integer wires with
exact value bounds, constant multiplies, adders, casts with the ap_fixed
rounding/overflow modes, compare/selects and ROMs. The same netlist is

* written out as Verilog (``firmware/verilog/writer.py``),
* interpreted on NumPy batches (:func:`evaluate`), so every lowering is checked
  against the emulator bit for bit before any simulator runs,
* costed by the analytic resource model (``firmware/estimate.py``).

Widths are never guessed: every net carries the integer interval ``[lo, hi]``
of the values it can hold and is declared with exactly the signed width that
interval needs, so no intermediate can overflow unless a cast says so.

Pipelining is automatic: each net knows its pipeline stage and the estimated
combinational delay (ns) since the last register. Before an op would exceed
the clock budget its operands are registered; operands from different stages
are delayed to the latest one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lightspeed.fixed import FixedType, _quantize_shift, as_exact, overflow


def signed_width(lo: int, hi: int) -> int:
    """Bits of a two's complement word holding every integer in [lo, hi]."""
    w = 1
    for v in (int(lo), int(hi)):
        need = (v.bit_length() + 1) if v >= 0 else ((-v - 1).bit_length() + 1)
        w = max(w, need)
    return w


@dataclass
class Net:
    """One hardware word: ``op`` applied to ``args`` (net ids)."""

    id: int
    op: str
    args: tuple[int, ...]
    lo: int
    hi: int
    stage: int
    delay: float
    attrs: dict[str, Any] = field(default_factory=dict)
    layer: str = ""

    @property
    def width(self) -> int:
        return signed_width(self.lo, self.hi)


@dataclass(frozen=True)
class Sig:
    """A fixed-point view of a net: value = net integer * 2**-frac.

    Multiplying by a power of two only changes ``frac``: no hardware.
    """

    net: int
    frac: int


@dataclass(frozen=True)
class Timing:
    """Delay model (ns) that decides where pipeline registers go.

    Rough UltraScale+ figures (LUT + routing ~0.5 ns, carry chains ~20 ps/bit);
    they only guide register placement, the clock is met or not in Vivado.
    """

    period: float = 5.0
    overhead: float = 0.5  # clock-to-out + setup + clock skew
    lut: float = 0.4  # one LUT level plus local routing
    carry_per_bit: float = 0.012  # CARRY8 chains
    dsp: float = 2.5  # unregistered DSP48E2 multiply

    @property
    def budget(self) -> float:
        return max(self.period - self.overhead, 0.5)

    def add(self, width: int) -> float:
        return self.lut + self.carry_per_bit * width


class Netlist:
    """Builder for a pipelined netlist (see module docstring)."""

    def __init__(self, timing: Timing | None = None) -> None:
        self.timing = timing or Timing()
        self.nets: list[Net] = []
        self.ports_in: dict[str, dict[str, Any]] = {}  # name -> {"type", "shape", "nets"}
        self.ports_out: dict[str, dict[str, Any]] = {}
        self.roms: list[tuple[int, ...]] = []  # distinct tables (entries as ints)
        self._rom_ids: dict[tuple[int, ...], int] = {}
        self._delayed: dict[tuple[int, int], int] = {}
        self._consts: dict[int, int] = {}
        self.memo: dict[tuple, Sig] = {}  # identical sub-results built once (arith.cast_product)
        self.layer = ""
        # initiation interval: clocks between input vectors (> 1 with a reuse factor,
        # see lightspeed.firmware.reuse); ``phase`` and ``hold`` nets refer to it
        self.ii = 1

    # -- basic nets ---------------------------------------------------------
    def _new(
        self,
        op: str,
        args: tuple[int, ...],
        lo: int,
        hi: int,
        stage: int,
        delay: float,
        **attrs: Any,
    ) -> int:
        if lo > hi:
            raise AssertionError(f"empty interval for {op}: [{lo}, {hi}]")
        nid = len(self.nets)
        self.nets.append(Net(nid, op, args, int(lo), int(hi), stage, delay, attrs, self.layer))
        return nid

    def net(self, s: Sig | int) -> Net:
        return self.nets[s.net if isinstance(s, Sig) else s]

    def input(self, port: str, index: int, t: FixedType) -> Sig:
        nid = self._new("in", (), t.min_int, t.max_int, 0, 0.0, port=port, index=index, type=t)
        return Sig(nid, t.frac)

    def const(self, value: int, frac: int = 0) -> Sig:
        value = int(value)
        if value not in self._consts:
            self._consts[value] = self._new("const", (), value, value, 0, 0.0, value=value)
        return Sig(self._consts[value], frac)

    def is_const(self, s: Sig) -> bool:
        return self.net(s).op == "const"

    def value(self, s: Sig) -> int:
        return int(self.net(s).attrs["value"])

    # -- pipelining ---------------------------------------------------------
    def reg(self, nid: int) -> int:
        """A register after net ``nid`` (memoized: one register chain per net)."""
        n = self.nets[nid]
        key = (nid, n.stage + 1)
        if key not in self._delayed:
            self._delayed[key] = self._new("reg", (nid,), n.lo, n.hi, n.stage + 1, 0.0)
        return self._delayed[key]

    def at_stage(self, nid: int, stage: int) -> int:
        """Net ``nid`` delayed by registers until ``stage`` (constants need no registers)."""
        n = self.nets[nid]
        if n.op == "const" or n.stage >= stage:
            return nid
        key = (nid, stage)
        if key in self._delayed:
            return self._delayed[key]
        cur = nid
        while self.nets[cur].stage < stage:
            cur = self.reg(cur)
        self._delayed[key] = cur
        return cur

    def _operands(self, nids: list[int], op_delay: float) -> tuple[list[int], int, float]:
        """Align operands to one stage, registering first if the op would break the budget."""
        live = [i for i in nids if self.nets[i].op != "const"]
        stage = max((self.nets[i].stage for i in live), default=0)
        ids = [self.at_stage(i, stage) for i in nids]
        delay = max((self.nets[i].delay for i in ids if self.nets[i].op != "const"), default=0.0)
        if delay > 0 and delay + op_delay > self.timing.budget:
            stage += 1
            ids = [self.at_stage(i, stage) for i in ids]
            delay = 0.0
        return ids, stage, delay + op_delay

    def barrier(self, sigs: np.ndarray) -> np.ndarray:
        """Register every signal of a tensor and align all to one stage (end of a layer)."""
        flat = [s for s in sigs.flat if isinstance(s, Sig)]
        if not flat:
            return sigs
        stage = max(self.nets[s.net].stage + (1 if self.nets[s.net].delay > 0 else 0) for s in flat)
        stage = max(stage, 0)
        out = np.empty(sigs.shape, dtype=object)
        for idx, s in np.ndenumerate(sigs):
            out[idx] = s if not isinstance(s, Sig) else Sig(self.at_stage(s.net, stage), s.frac)
        return out

    # -- time multiplexing (reuse factor) ------------------------------------
    def phase(self, stage: int) -> Sig:
        """The group index at ``stage``: clocks since this stage's vector arrived, modulo II.

        The design accepts a vector only when its phase counter reads 0, so at
        stage ``S`` the vector's ``g``-th clock is the counter value ``(S + g) mod II``.
        """
        nid = self._new("phase", (), 0, self.ii - 1, stage, 0.0)
        return Sig(nid, 0)

    def hold(self, a: Sig, group: int, stage: int) -> Sig:
        """A register with enable: loads ``a`` on its vector's ``group``-th clock and keeps it
        until the next vector's; the result is declared at ``stage`` (when all holds of one
        time-multiplexed block carry the same vector)."""
        n = self.net(a)
        if n.op == "const":
            return a
        nid = self._new("hold", (a.net,), n.lo, n.hi, stage, 0.0, group=group)
        return Sig(nid, a.frac)

    # -- arithmetic ---------------------------------------------------------
    def add(self, a: Sig, b: Sig, sub: bool = False, wrap: int | None = None) -> Sig:
        """``a + b`` (or ``a - b``) exactly at the finer of the two scales.

        ``wrap``: keep only this many bits at the result scale (two's complement
        wrap-around); used inside WRAP accumulators where it is exact modulo.
        """
        frac = max(a.frac, b.frac)
        sa, sb = frac - a.frac, frac - b.frac
        na, nb = self.net(a), self.net(b)
        alo, ahi = na.lo << sa, na.hi << sa
        blo, bhi = (nb.lo << sb, nb.hi << sb) if not sub else (-(nb.hi << sb), -(nb.lo << sb))
        lo, hi = alo + blo, ahi + bhi
        w = signed_width(lo, hi)
        ids, stage, delay = self._operands([a.net, b.net], self.timing.add(w))
        attrs: dict[str, Any] = {"sha": sa, "shb": sb, "sub": sub}
        if wrap is not None and w > wrap:
            lo, hi = -(1 << (wrap - 1)), (1 << (wrap - 1)) - 1
            attrs["wrap"] = wrap
        nid = self._new("add", tuple(ids), lo, hi, stage, delay, **attrs)
        return Sig(nid, frac)

    def neg(self, a: Sig) -> Sig:
        n = self.net(a)
        if n.op == "const":
            return self.const(-n.attrs["value"], a.frac)
        ids, stage, delay = self._operands([a.net], self.timing.add(n.width + 1))
        return Sig(self._new("neg", tuple(ids), -n.hi, -n.lo, stage, delay), a.frac)

    def mulc(self, a: Sig, c: int, c_frac: int) -> Sig:
        """``a * c * 2**-c_frac`` with a DSP-style multiplier (``*`` in Verilog)."""
        n = self.net(a)
        cands = [n.lo * c, n.hi * c]
        lo, hi = min(cands), max(cands)
        ids, stage, delay = self._operands([a.net], self.timing.dsp)
        return Sig(self._new("mulc", tuple(ids), lo, hi, stage, delay, c=int(c)), a.frac + c_frac)

    def mul(self, a: Sig, b: Sig) -> Sig:
        na, nb = self.net(a), self.net(b)
        cands = [na.lo * nb.lo, na.lo * nb.hi, na.hi * nb.lo, na.hi * nb.hi]
        ids, stage, delay = self._operands([a.net, b.net], self.timing.dsp)
        return Sig(
            self._new("mul", tuple(ids), min(cands), max(cands), stage, delay), a.frac + b.frac
        )

    def cast(self, a: Sig, frac: int, rounding: str = "TRN", t: FixedType | None = None) -> Sig:
        """Quantize to ``frac`` fractional bits with ``rounding``, then apply t's overflow mode.

        Exactly ``fixed.requantize`` when ``t`` is given (frac = t.frac, rounding =
        t.rounding); with ``t=None`` only the quantization step (no overflow).
        """
        n = self.net(a)
        s = a.frac - frac
        if s > 0:
            qlo, qhi = n.lo >> s, (n.hi >> s) + (0 if rounding == "TRN" else 1)
        else:
            qlo, qhi = n.lo << -s, n.hi << -s
        if n.op == "const":  # fold constants
            v = np.array([n.attrs["value"]], dtype=object)
            v = _quantize_shift(v, s, rounding) if s > 0 else v << max(-s, 0)
            if t is not None:
                v = overflow(v.astype(object), t)
            return self.const(int(v[0]), frac)
        ovf = None
        lo, hi = qlo, qhi
        if t is not None and (qlo < t.min_int or qhi > t.max_int):
            ovf = t
            if t.overflow == "WRAP":
                lo, hi = t.min_int, t.max_int
            elif t.overflow == "SAT":
                lo, hi = min(max(qlo, t.min_int), t.max_int), max(min(qhi, t.max_int), t.min_int)
            elif t.overflow == "SAT_ZERO":
                lo, hi = min(max(qlo, t.min_int), 0), max(min(qhi, t.max_int), 0)
            else:  # SAT_SYM
                low = -t.max_int if t.signed else t.min_int
                lo, hi = min(max(qlo, low), t.max_int), max(min(qhi, t.max_int), low)
        if s <= 0 and ovf is None:
            if s == 0:
                return a
            return self._shift(a, -s, frac)
        cost = (self.timing.add(signed_width(qlo, qhi)) if s > 0 and rounding != "TRN" else 0.0) + (
            self.timing.lut * 2 if ovf is not None and ovf.overflow != "WRAP" else 0.0
        )
        ids, stage, delay = self._operands([a.net], cost)
        nid = self._new(
            "cast",
            tuple(ids),
            lo,
            hi,
            stage,
            delay,
            shift=s,
            rounding=rounding if s > 0 else "TRN",
            ovf=ovf,
            qlo=qlo,
            qhi=qhi,
        )
        return Sig(nid, frac)

    def _shift(self, a: Sig, k: int, frac: int) -> Sig:
        """Left shift by k (wiring only)."""
        n = self.net(a)
        ids, stage, delay = self._operands([a.net], 0.0)
        return Sig(self._new("shl", tuple(ids), n.lo << k, n.hi << k, stage, delay, k=k), frac)

    def relu(self, a: Sig) -> Sig:
        n = self.net(a)
        if n.lo >= 0:
            return a
        t = n.attrs.get("ovf") if n.op == "cast" else None
        if t is not None and t.overflow == "SAT" and n.attrs.get("clamp_lo") is None:
            # relu(sat(q)) == q saturated to [0, max]: one compare/mux level instead of two
            nid = self._new(
                "cast",
                n.args,
                max(n.lo, 0),
                max(n.hi, 0),
                n.stage,
                n.delay,
                **{**n.attrs, "clamp_lo": 0},
            )
            return Sig(nid, a.frac)
        ids, stage, delay = self._operands([a.net], self.timing.lut)
        return Sig(
            self._new(
                "clamp", tuple(ids), max(n.lo, 0), max(n.hi, 0), stage, delay, cmin=0, cmax=None
            ),
            a.frac,
        )

    def clamp(self, a: Sig, cmin: int | None, cmax: int | None) -> Sig:
        n = self.net(a)
        cmin = None if cmin is None or cmin <= n.lo else int(cmin)
        cmax = None if cmax is None or cmax >= n.hi else int(cmax)
        if cmin is None and cmax is None:
            return a
        lo = n.lo if cmin is None else max(n.lo, cmin)
        hi = n.hi if cmax is None else min(n.hi, cmax)
        if cmax is not None:
            lo = min(lo, cmax)
        if cmin is not None:
            hi = max(hi, cmin)
        ids, stage, delay = self._operands([a.net], self.timing.add(n.width) + self.timing.lut)
        return Sig(
            self._new("clamp", tuple(ids), lo, hi, stage, delay, cmin=cmin, cmax=cmax), a.frac
        )

    def max(self, a: Sig, b: Sig) -> Sig:
        if a.frac != b.frac:
            raise AssertionError("max of signals at different scales")
        na, nb = self.net(a), self.net(b)
        w = max(na.width, nb.width)
        ids, stage, delay = self._operands([a.net, b.net], self.timing.add(w) + self.timing.lut)
        return Sig(
            self._new("max", tuple(ids), max(na.lo, nb.lo), max(na.hi, nb.hi), stage, delay), a.frac
        )

    def select_pos(self, cond: Sig, a: Sig, b: Sig) -> Sig:
        """``cond > 0 ? a : b`` (a and b at the same scale)."""
        if a.frac != b.frac:
            raise AssertionError("select of signals at different scales")
        na, nb = self.net(a), self.net(b)
        ids, stage, delay = self._operands([cond.net, a.net, b.net], self.timing.lut)
        return Sig(
            self._new("selpos", tuple(ids), min(na.lo, nb.lo), max(na.hi, nb.hi), stage, delay),
            a.frac,
        )

    def rom(self, index: Sig, table: np.ndarray, frac: int) -> Sig:
        """``table[index]`` (index bounds must lie within the table)."""
        entries = tuple(int(v) for v in np.asarray(table).flat)
        n = self.net(index)
        if n.lo < 0 or n.hi >= len(entries):
            raise AssertionError("ROM index out of range")
        if n.op == "const":
            return self.const(entries[n.attrs["value"]], frac)
        if entries not in self._rom_ids:
            self._rom_ids[entries] = len(self.roms)
            self.roms.append(entries)
        used = entries[n.lo : n.hi + 1]
        depth = max(1, int(np.ceil(max(n.width - 6, 0) / 2)) + 1)
        ids, stage, delay = self._operands([index.net], self.timing.lut * depth)
        nid = self._new(
            "rom", tuple(ids), min(used), max(used), stage, delay, rom=self._rom_ids[entries]
        )
        return Sig(nid, frac)

    # -- trees --------------------------------------------------------------
    def sum(self, terms: list[tuple[Sig, bool]], wrap_frac: tuple[int, int] | None = None) -> Sig:
        """Balanced adder tree over (signal, negated) terms; constants folded into one.

        ``wrap_frac=(W, F)``: a WRAP accumulator of W bits at F fractional bits;
        partial sums keep only the bits that survive the final wrap.
        """
        const_val, const_frac = 0, None
        live: list[tuple[Sig, bool]] = []
        for s, negate in terms:
            if self.is_const(s):
                v = self.value(s) * (-1 if negate else 1)
                if const_frac is None:
                    const_val, const_frac = v, s.frac
                else:
                    f = max(const_frac, s.frac)
                    const_val = (const_val << (f - const_frac)) + (v << (f - s.frac))
                    const_frac = f
            else:
                live.append((s, negate))
        if const_frac is not None and const_val != 0:
            live.append((self.const(const_val, const_frac), False))
        if not live:
            return self.const(0, const_frac or 0)

        def wrap_bits(frac: int) -> int | None:
            if wrap_frac is None:
                return None
            w, f = wrap_frac
            return w + max(frac - f, 0)

        level = live
        while len(level) > 1:
            nxt: list[tuple[Sig, bool]] = []
            for i in range(0, len(level) - 1, 2):
                (a, na), (b, nb) = level[i], level[i + 1]
                frac = max(a.frac, b.frac)
                if na and not nb:
                    a, b, na, nb = b, a, nb, na
                s = self.add(a, b, sub=(na != nb), wrap=wrap_bits(frac))
                nxt.append((s, na and nb))
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
        s, negated = level[0]
        return self.neg(s) if negated else s

    def max_tree(self, sigs: list[Sig]) -> Sig:
        level = list(sigs)
        while len(level) > 1:
            nxt = [self.max(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
        return level[0]

    # -- ports --------------------------------------------------------------
    def add_output(self, name: str, t: FixedType, sigs: np.ndarray) -> None:
        self.ports_out[name] = {"type": t, "shape": tuple(sigs.shape), "sigs": list(sigs.flat)}

    def finish(self) -> int:
        """Register all outputs, align them to one stage; returns the latency in cycles."""
        all_sigs = [s for p in self.ports_out.values() for s in p["sigs"]]
        stage = max(
            (self.nets[s.net].stage + (1 if self.nets[s.net].delay > 0 else 0) for s in all_sigs),
            default=0,
        )
        for p in self.ports_out.values():
            t = p["type"]
            fixed = []
            for s in p["sigs"]:
                if s.frac != t.frac:
                    raise AssertionError("output signal not at its type's scale")
                n = self.nets[s.net]
                if n.lo < t.min_int or n.hi > t.max_int:
                    raise AssertionError(f"output bounds [{n.lo}, {n.hi}] exceed {t}")
                fixed.append(Sig(self.at_stage(s.net, stage), s.frac))
            p["sigs"] = fixed
        self.latency = stage
        return stage


def live_nets(nl: Netlist) -> list[bool]:
    """Which nets feed an output (the rest is dead logic synthesis would remove)."""
    live = [False] * len(nl.nets)
    stack = [s.net for p in nl.ports_out.values() for s in p["sigs"]]
    while stack:
        i = stack.pop()
        if live[i]:
            continue
        live[i] = True
        stack.extend(nl.nets[i].args)
    return live


# ---------------------------------------------------------------------------
# interpreter


def evaluate(
    nl: Netlist, inputs: dict[str, np.ndarray], check_bounds: bool = True
) -> dict[str, np.ndarray]:
    """Run the netlist on integer inputs ``{port: (B, *shape)}``; returns integer outputs.

    Registers are transparent here (a pipelined design computes the same
    function); the cycle behaviour is what the RTL simulation checks.
    """
    batch = next(iter(inputs.values())).shape[0] if inputs else 1
    flat_in = {k: np.asarray(v).reshape(batch, -1) for k, v in inputs.items()}
    val: list[Any] = [None] * len(nl.nets)
    for n in nl.nets:
        a = [val[i] for i in n.args]
        if n.op == "in":
            v = as_exact(flat_in[n.attrs["port"]][:, n.attrs["index"]])
        elif n.op == "const":
            v = np.full(
                batch,
                n.attrs["value"],
                dtype=object if abs(n.attrs["value"]) >= 2**62 else np.int64,
            )
        elif n.op == "reg":
            v = a[0]
        elif n.op == "phase":
            # every group of a time-multiplexed block at once: values (II, batch) broadcast
            # through its datapath; ``hold`` picks a group's row
            v = np.arange(nl.ii, dtype=np.int64)[:, None]
        elif n.op == "hold":
            v = np.asarray(a[0])
            if v.ndim == 2:
                v = v[n.attrs["group"]]
        elif n.op == "add":
            x = as_exact(a[0], n.attrs["sha"] + 2) << n.attrs["sha"]
            y = as_exact(a[1], n.attrs["shb"] + 2) << n.attrs["shb"]
            v = x - y if n.attrs["sub"] else x + y
            if "wrap" in n.attrs:
                w = n.attrs["wrap"]
                v = (as_exact(v) + (1 << (w - 1))) % (1 << w) - (1 << (w - 1))
        elif n.op == "neg":
            v = -as_exact(a[0], 1)
        elif n.op == "shl":
            v = as_exact(a[0], n.attrs["k"]) << n.attrs["k"]
        elif n.op == "mulc":
            v = as_exact(a[0], abs(n.attrs["c"]).bit_length()) * n.attrs["c"]
        elif n.op == "mul":
            bits = max(nl.nets[n.args[1]].width, 1)
            v = as_exact(a[0], bits) * as_exact(a[1], bits)
        elif n.op == "cast":
            v = as_exact(a[0])
            s = n.attrs["shift"]
            if s > 0:
                v = _quantize_shift(v, s, n.attrs["rounding"])
            elif s < 0:
                v = as_exact(v, -s) << (-s)
            if n.attrs["ovf"] is not None:
                v = overflow(np.asarray(v), n.attrs["ovf"])
            if n.attrs.get("clamp_lo") is not None:
                v = np.maximum(v, n.attrs["clamp_lo"])
        elif n.op == "clamp":
            v = a[0]
            if n.attrs["cmin"] is not None:
                v = np.maximum(v, n.attrs["cmin"])
            if n.attrs["cmax"] is not None:
                v = np.minimum(v, n.attrs["cmax"])
        elif n.op == "max":
            v = np.maximum(a[0], a[1])
        elif n.op == "selpos":
            v = np.where(a[0] > 0, a[1], a[2])
        elif n.op == "rom":
            table = np.array(nl.roms[n.attrs["rom"]], dtype=object)
            v = table[np.asarray(a[0]).astype(np.int64)]
            v = v.astype(np.int64) if max(abs(n.lo), abs(n.hi)) < 2**62 else v
        else:  # pragma: no cover - every op above
            raise AssertionError(f"unknown netlist op {n.op}")
        v = np.asarray(v)
        if v.dtype == object and max(abs(n.lo), abs(n.hi)) < 2**62:
            v = v.astype(np.int64)
        if check_bounds and v.size and (np.min(v) < n.lo or np.max(v) > n.hi):
            raise AssertionError(
                f"net {n.id} ({n.op}, layer {n.layer}) leaves its bounds [{n.lo}, {n.hi}]: "
                f"[{np.min(v)}, {np.max(v)}]"
            )
        val[n.id] = v
    out = {}
    for name, p in nl.ports_out.items():
        cols = [val[s.net] for s in p["sigs"]]
        arr = np.stack(cols, axis=1) if cols else np.zeros((batch, 0), dtype=np.int64)
        out[name] = arr.reshape(batch, *p["shape"])
    return out
