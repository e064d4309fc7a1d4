"""The FastJet energy-correlator calls in the generator match the documented formulas."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

ak = pytest.importorskip("awkward")
fastjet = pytest.importorskip("fastjet")

from lightspeed.data._physics import _ecf_features  # noqa: E402


def _random_jets(n_jets: int, rng: np.random.Generator) -> list[np.ndarray]:
    jets = []
    for _ in range(n_jets):
        n = int(rng.integers(3, 9))
        pt = rng.exponential(50.0, n) + 1.0
        y = 0.3 + rng.normal(0, 0.25, n)
        phi = 1.0 + rng.normal(0, 0.25, n)
        mt = pt  # massless particles: E = pT cosh y, pz = pT sinh y
        jets.append(
            np.stack([pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y), mt * np.cosh(y)], 1)
        )
    return jets


def _reference(p: np.ndarray) -> dict[str, float]:
    """ECF ratios from their definitions with the pt_R measure (pT and rapidity-azimuth distance)."""
    pt = np.hypot(p[:, 0], p[:, 1])
    y = 0.5 * np.log((p[:, 3] + p[:, 2]) / (p[:, 3] - p[:, 2]))
    phi = np.arctan2(p[:, 1], p[:, 0])
    n = len(pt)
    dphi = np.abs(phi[:, None] - phi[None, :])
    dphi = np.minimum(dphi, 2 * np.pi - dphi)
    r = np.hypot(y[:, None] - y[None, :], dphi)
    z = pt / pt.sum()

    def e2(beta: float) -> float:
        return sum(z[i] * z[j] * r[i, j] ** beta for i, j in itertools.combinations(range(n), 2))

    def e3(beta: float, angles: int) -> float:
        tot = 0.0
        for i, j, k in itertools.combinations(range(n), 3):
            a = sorted((r[i, j], r[i, k], r[j, k]))[:angles]
            tot += z[i] * z[j] * z[k] * np.prod(a) ** beta
        return tot

    out = {}
    for b in (0.0, 1.0, 2.0):
        out[f"j_c1_b{int(b)}_mmdt"] = e2(b)
    for b in (1, 2):
        out[f"j_c2_b{b}_mmdt"] = e3(b, 3) / e2(b) ** 2
        out[f"j_d2_b{b}_mmdt"] = e3(b, 3) / e2(b) ** 3
        out[f"j_d2_a1_b{b}_mmdt"] = e3(1.0, 3) / e2(b) ** (3.0 / b)
        out[f"j_m2_b{b}_mmdt"] = e3(b, 1) / e2(b)
        out[f"j_n2_b{b}_mmdt"] = e3(b, 2) / e2(b) ** 2
    return out


def test_energy_correlators_match_definitions() -> None:
    jets = _random_jets(6, np.random.default_rng(3))
    arr = ak.Array(
        [[dict(zip(("px", "py", "pz", "E"), row, strict=True)) for row in j] for j in jets]
    )
    got = _ecf_features(arr, fastjet)
    for k, p in enumerate(jets):
        want = _reference(p)
        for name, value in want.items():
            assert got[name][k] == pytest.approx(value, rel=1e-6), name


def _massless(pt: float, y: float, phi: float) -> dict[str, float]:
    return {
        "px": pt * np.cos(phi),
        "py": pt * np.sin(phi),
        "pz": pt * np.sinh(y),
        "E": pt * np.cosh(y),
    }


def test_soft_drop_multiplicity_and_zlogz_on_a_constructed_jet() -> None:
    from lightspeed.data._physics import substructure
    from lightspeed.data.schema import FEATURES

    # two hard prongs 0.3 apart and one soft wide particle: mMDT drops the soft one
    parts = [_massless(300, 0, 0), _massless(200, 0, 0.3), _massless(5, 0, 0.7)]
    # a single hard prong with a soft partner: everything soft is groomed, the mass is ~0
    parts2 = [_massless(500, 0.1, 1.0), _massless(4, 0.1, 1.5), _massless(3, 0.4, 1.0)]
    jets = ak.Array([parts, parts2])
    e = np.array([sum(p["E"] for p in parts), sum(p["E"] for p in parts2)])
    f = dict(zip(FEATURES, substructure(jets, e).T, strict=True))
    m_two = np.sqrt(2 * 300 * 200 * (1 - np.cos(0.3)))
    assert f["j_mass_mmdt"][0] == pytest.approx(m_two, rel=1e-9)
    assert f["j_mass_mmdt"][1] == pytest.approx(0.0, abs=1e-3)
    np.testing.assert_array_equal(f["j_multiplicity"], [3, 3])
    z = np.array([p["E"] for p in parts]) / e[0]
    assert f["j_zlogz"][0] == pytest.approx(np.sum(z * np.log(z)), rel=1e-9)
    # C1 at beta = 0 of the groomed two-prong jet: z1 z2 with z = 0.6, 0.4
    assert f["j_c1_b0_mmdt"][0] == pytest.approx(0.6 * 0.4, rel=1e-9)
