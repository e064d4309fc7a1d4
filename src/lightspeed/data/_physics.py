"""Event generation and jet reconstruction for one chunk of jets (runs in a worker).

Pythia8 generates batches of events as awkward arrays; FastJet's awkward
interface clusters all events of a batch at once, grooms the leading jets and
computes the energy correlators, so the Python overhead is per batch, not per
jet. Nothing here touches files: a chunk comes back as a dict of arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lightspeed.data.schema import CLASSES, FEATURES, N_RINGS, RING_MAX_DR

# Pythia settings per class. Hadronic decays only: W/Z/top force W and Z to quarks (d..b).
_HADRONIC_W = ("24:onMode = off", "24:onIfAny = 1 2 3 4 5")
_HADRONIC_Z = ("23:onMode = off", "23:onIfAny = 1 2 3 4 5")
PROCESS_SETTINGS: dict[str, tuple[str, ...]] = {
    "g": ("HardQCD:gg2gg = on", "HardQCD:qqbar2gg = on"),
    "q": ("HardQCD:qq2qq = on", "HardQCD:qqbar2qqbarNew = on"),
    "w": ("WeakDoubleBoson:ffbar2WW = on", *_HADRONIC_W),
    # gmZmode = 2: Z only, no photon interference, so every boson is a Z.
    "z": ("WeakDoubleBoson:ffbar2gmZgmZ = on", "WeakZ0:gmZmode = 2", *_HADRONIC_Z),
    "t": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", *_HADRONIC_W),
}
# |PDG id| of the truth object a jet must match, and of the mothers of its decay quarks.
_TRUTH_ID = {"w": 24, "z": 23, "t": 6}
_DECAY_PARENTS = {"w": (24,), "z": (23,), "t": (6, 24)}
_N_DECAY_QUARKS = {"w": 2, "z": 2, "t": 3}
_LIGHT_QUARKS = (1, 2, 3)
_INVISIBLE = (12, 14, 16)
# Reclustering radius for "all constituents into one C/A tree" (grooming, ECFs). With a finite
# R = 0.8, pairs further apart than R (common in wide jets) would merge with the beam and the
# exclusive jet would lose particles; FastJet's own SoftDrop reclusters with its maximal R too.
_RECLUSTER_R = 1000.0


@dataclass(frozen=True)
class PhysicsConfig:
    """What to generate; stored in the output file so a resume can check it matches."""

    sqrt_s: float = 13000.0
    pthat_min: float = 500.0
    pthat_max: float = 1000.0
    mpi: bool = False
    jet_r: float = 0.8
    min_jet_pt: float = 300.0
    max_abs_eta: float = 2.5
    match_dr: float = 0.8
    require_contained: bool = True
    n_constituents: int = 0
    batch_events: int = 200


def pythia_settings(cls: str, cfg: PhysicsConfig, seed: int) -> list[str]:
    """All Pythia settings for class ``cls``; ``seed`` in [1, 900000000]."""
    return [
        f"Beams:eCM = {cfg.sqrt_s}",
        *PROCESS_SETTINGS[cls],
        f"PhaseSpace:pTHatMin = {cfg.pthat_min}",
        f"PhaseSpace:pTHatMax = {cfg.pthat_max}",
        f"PartonLevel:MPI = {'on' if cfg.mpi else 'off'}",
        "Random:setSeed = on",
        f"Random:seed = {seed}",
        "Print:quiet = on",
    ]


def _kin(px: Any, py: Any, pz: Any) -> tuple[Any, Any, Any]:
    pt = np.hypot(px, py)
    return pt, np.arcsinh(pz / pt), np.arctan2(py, px)


def _delta_r(eta1: Any, phi1: Any, eta2: Any, phi2: Any) -> Any:
    dphi = (phi1 - phi2 + math.pi) % (2 * math.pi) - math.pi
    return np.hypot(eta1 - eta2, dphi)


def _ecf_features(groomed: Any, fastjet: Any) -> dict[str, np.ndarray]:
    """The 13 energy-correlation ratios of the groomed jets (FastJet contrib EnergyCorrelator, pt_R)."""
    cs = fastjet.ClusterSequence(
        groomed, fastjet.JetDefinition(fastjet.cambridge_algorithm, _RECLUSTER_R)
    )

    def ecf(**kw: Any) -> np.ndarray:
        return np.asarray(cs.exclusive_jets_energy_correlator(njets=1, **kw), dtype=np.float64)

    return {
        "j_c1_b0_mmdt": ecf(func="doubleratio", npoint=1, beta=0.0),
        "j_c1_b1_mmdt": ecf(func="doubleratio", npoint=1, beta=1.0),
        "j_c1_b2_mmdt": ecf(func="doubleratio", npoint=1, beta=2.0),
        "j_c2_b1_mmdt": ecf(func="doubleratio", npoint=2, beta=1.0),
        "j_c2_b2_mmdt": ecf(func="doubleratio", npoint=2, beta=2.0),
        "j_d2_b1_mmdt": ecf(func="d2", beta=1.0),
        "j_d2_b2_mmdt": ecf(func="d2", beta=2.0),
        "j_d2_a1_b1_mmdt": ecf(func="generalizedd2", alpha=1.0, beta=1.0),
        "j_d2_a1_b2_mmdt": ecf(func="generalizedd2", alpha=1.0, beta=2.0),
        "j_m2_b1_mmdt": ecf(func="mseries", npoint=2, beta=1.0),
        "j_m2_b2_mmdt": ecf(func="mseries", npoint=2, beta=2.0),
        "j_n2_b1_mmdt": ecf(func="nseries", npoint=2, beta=1.0),
        "j_n2_b2_mmdt": ecf(func="nseries", npoint=2, beta=2.0),
    }


def substructure(constituents: Any, jet_e: np.ndarray, jet_r: float = 0.8) -> np.ndarray:
    """The 16 hls4ml features (FEATURES order) of jets given as jagged (px, py, pz, E) records.

    ``jet_e`` is each jet's energy (for z = E_i / E_jet in j_zlogz).
    """
    import awkward as ak
    import fastjet

    feats: dict[str, np.ndarray] = {}
    z = constituents.E / jet_e
    feats["j_zlogz"] = ak.to_numpy(ak.sum(z * np.log(z), axis=1))
    feats["j_multiplicity"] = ak.to_numpy(ak.num(constituents)).astype(np.float64)
    cs = fastjet.ClusterSequence(
        constituents, fastjet.JetDefinition(fastjet.cambridge_algorithm, _RECLUSTER_R)
    )
    # mMDT = soft drop with beta = 0, z_cut = 0.1
    sd = cs.exclusive_jets_softdrop_grooming(njets=1, beta=0.0, symmetry_cut=0.1, R0=jet_r)
    feats["j_mass_mmdt"] = ak.to_numpy(sd.msoftdrop)
    feats.update(_ecf_features(sd.constituents, fastjet))
    return np.stack([np.asarray(feats[name], dtype=np.float64) for name in FEATURES], axis=1)


def process_batch(events: Any, cls: str, cfg: PhysicsConfig) -> dict[str, np.ndarray]:
    """Leading, truth-matched jets of a batch of Pythia events -> arrays (one row per kept jet)."""
    import awkward as ak
    import fastjet

    prt = events.prt
    aid = abs(prt.id)
    visible = prt[
        (prt.status > 0) & (aid != _INVISIBLE[0]) & (aid != _INVISIBLE[1]) & (aid != _INVISIBLE[2])
    ]
    parts = ak.zip(
        {"px": visible.p.px, "py": visible.p.py, "pz": visible.p.pz, "E": visible.p.e},
        with_name="Momentum4D",
    )
    cs = fastjet.ClusterSequence(parts, fastjet.JetDefinition(fastjet.antikt_algorithm, cfg.jet_r))
    jets = cs.inclusive_jets(min_pt=0.5 * cfg.min_jet_pt)
    cons = cs.constituents(min_pt=0.5 * cfg.min_jet_pt)
    has = ak.num(jets) > 0
    prt, jets, cons = prt[has], jets[has], cons[has]
    lead = ak.argmax(np.hypot(jets.px, jets.py), axis=1, keepdims=True)
    jet = ak.firsts(jets[lead])
    lc = ak.flatten(cons[lead], axis=1)
    jpx, jpy, jpz, je = (ak.to_numpy(jet[f]).astype(np.float64) for f in ("px", "py", "pz", "E"))
    jpt, jeta, jphi = _kin(jpx, jpy, jpz)
    jmass = np.sqrt(np.maximum(je**2 - jpx**2 - jpy**2 - jpz**2, 0.0))

    # Truth candidates: the outgoing hard partons (QCD) or the last copy of the W/Z/top.
    if cls in ("g", "q"):
        cand = prt[prt.status == -23]
    else:
        tid = _TRUTH_ID[cls]
        is_x = abs(prt.id) == tid
        d1 = ak.where(is_x & (prt.daughter1 > 0), prt.daughter1, 0)
        cand = prt[is_x & (abs(prt.id[d1]) != tid)]
    cpt, ceta, cphi = _kin(cand.p.px, cand.p.py, cand.p.pz)
    dr = _delta_r(ceta, cphi, jeta, jphi)
    best = ak.argmin(dr, axis=1, keepdims=True)
    dr_best = ak.to_numpy(ak.fill_none(ak.firsts(dr[best]), np.inf))
    id_best = ak.to_numpy(ak.fill_none(ak.firsts(cand.id[best]), 0))
    truth_pt = ak.to_numpy(ak.fill_none(ak.firsts(cpt[best]), 0.0))

    keep = (dr_best < cfg.match_dr) & (jpt >= cfg.min_jet_pt) & (np.abs(jeta) <= cfg.max_abs_eta)
    if cls == "g":
        keep &= id_best == 21
    elif cls == "q":
        keep &= np.isin(np.abs(id_best), _LIGHT_QUARKS)
    elif cfg.require_contained:
        # All quarks from the matched boson/top decay inside the jet (dR < R).
        m1 = ak.where(prt.mother1 > 0, prt.mother1, 0)
        mother_id = abs(prt.id[m1])
        qid = abs(prt.id)
        is_q = (qid >= 1) & (qid <= 5)
        parent_ok = mother_id == _DECAY_PARENTS[cls][0]
        for pid in _DECAY_PARENTS[cls][1:]:
            parent_ok = parent_ok | (mother_id == pid)
        dq = prt[is_q & parent_ok]
        _, qeta, qphi = _kin(dq.p.px, dq.p.py, dq.p.pz)
        n_in = ak.to_numpy(ak.sum(_delta_r(qeta, qphi, jeta, jphi) < cfg.jet_r, axis=1))
        keep &= n_in >= _N_DECAY_QUARKS[cls]
    if not np.any(keep):
        return {}
    lc = lc[keep]
    jpt, jeta, jphi, jmass, je = jpt[keep], jeta[keep], jphi[keep], jmass[keep], je[keep]

    features = substructure(lc, je, cfg.jet_r)

    # Constituent kinematics (ungroomed), sorted by pT, for rings and the optional table.
    cpt_, ceta_, cphi_ = _kin(lc.px, lc.py, lc.pz)
    order = ak.argsort(cpt_, axis=1, ascending=False)
    cpt_, ceta_, cphi_ = cpt_[order], ceta_[order], cphi_[order]
    cdr = _delta_r(ceta_, cphi_, jeta, jphi)
    ring = ak.values_astype(np.minimum(cdr / RING_MAX_DR * N_RINGS, N_RINGS - 1), np.int64)
    rings = np.zeros((len(jpt), N_RINGS))
    rows = np.repeat(np.arange(len(jpt)), ak.to_numpy(ak.num(ring)))
    np.add.at(rings, (rows, ak.to_numpy(ak.flatten(ring))), ak.to_numpy(ak.flatten(cpt_)))

    good = np.all(np.isfinite(features), axis=1)
    out = {
        "features": features[good].astype(np.float32),
        "labels": np.full(int(good.sum()), CLASSES.index(cls), dtype=np.int8),
        "jet_pt": jpt[good].astype(np.float32),
        "jet_eta": jeta[good].astype(np.float32),
        "jet_phi": jphi[good].astype(np.float32),
        "jet_mass": jmass[good].astype(np.float32),
        "truth_pt": truth_pt[keep][good].astype(np.float32),
        "rings": rings[good].astype(np.float32),
    }
    if cfg.n_constituents > 0:
        n = cfg.n_constituents
        table = np.zeros((len(jpt), n, 3), dtype=np.float32)
        for k, arr in enumerate((cpt_, ceta_, cphi_)):
            padded = ak.fill_none(ak.pad_none(arr, n, axis=1, clip=True), 0.0)
            table[:, :, k] = ak.to_numpy(padded)
        out["constituents"] = table[good]
    return out


def generate_chunk(cls: str, n_jets: int, seed: int, cfg: PhysicsConfig) -> dict[str, np.ndarray]:
    """Generate events of class ``cls`` until ``n_jets`` jets pass; deterministic in ``seed``."""
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    for line in pythia_settings(cls, cfg, seed):
        if not pythia.readString(line):
            raise RuntimeError(f"Pythia rejected the setting {line!r}")
    if not pythia.init():
        raise RuntimeError(f"Pythia failed to initialise for class {cls!r}")
    parts: list[dict[str, np.ndarray]] = []
    have = 0
    max_events = 200 * n_jets + 10_000  # guard against a selection that keeps nothing
    n_events = 0
    # small chunks (tests, quick looks) need fewer events per batch; big ones use batch_events
    batch = min(cfg.batch_events, max(20, 2 * n_jets))
    while have < n_jets:
        if n_events >= max_events:
            raise RuntimeError(
                f"class {cls!r}: only {have} of {n_jets} jets passed in {n_events} events"
            )
        events = pythia.nextBatch(batch)
        n_events += batch
        got = process_batch(events, cls, cfg)
        if got:
            parts.append(got)
            have += len(got["labels"])
    out = {k: np.concatenate([p[k] for p in parts])[:n_jets] for k in parts[0]}
    out["n_events"] = np.asarray(n_events, dtype=np.int64)
    return out
