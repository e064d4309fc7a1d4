"""Names and definitions shared by the jet generator, the loaders and the zoo.

The 16 features and the 5 class labels follow the public hls4ml LHC jet
dataset (OpenML ``hls4ml_lhc_jets_hlf``, Zenodo 3602260), in its column
order, so a model trained on one can be evaluated on the other.
"""

from __future__ import annotations

# Class order of the hls4ml dataset's one-hot columns j_g, j_q, j_w, j_z, j_t.
CLASSES: tuple[str, ...] = ("g", "q", "w", "z", "t")

FEATURES: tuple[str, ...] = (
    "j_zlogz",
    "j_c1_b0_mmdt",
    "j_c1_b1_mmdt",
    "j_c1_b2_mmdt",
    "j_c2_b1_mmdt",
    "j_c2_b2_mmdt",
    "j_d2_b1_mmdt",
    "j_d2_b2_mmdt",
    "j_d2_a1_b1_mmdt",
    "j_d2_a1_b2_mmdt",
    "j_m2_b1_mmdt",
    "j_m2_b2_mmdt",
    "j_n2_b1_mmdt",
    "j_n2_b2_mmdt",
    "j_mass_mmdt",
    "j_multiplicity",
)

# One line per feature: how lightspeed computes it (see docs/data.md for the formulas).
FEATURE_DOCS: dict[str, str] = {
    "j_zlogz": "sum_i z_i ln z_i over all jet constituents, z_i = E_i / E_jet (ungroomed)",
    "j_c1_b0_mmdt": "C1 double ratio e2/e1^2, beta=0, on the mMDT-groomed jet",
    "j_c1_b1_mmdt": "C1 double ratio, beta=1, groomed",
    "j_c1_b2_mmdt": "C1 double ratio, beta=2, groomed",
    "j_c2_b1_mmdt": "C2 = e3 e1 / e2^2, beta=1, groomed",
    "j_c2_b2_mmdt": "C2, beta=2, groomed",
    "j_d2_b1_mmdt": "D2 = e3 / e2^3, beta=1, groomed",
    "j_d2_b2_mmdt": "D2, beta=2, groomed",
    "j_d2_a1_b1_mmdt": "generalized D2 e3(alpha=1) / e2(beta=1)^(3 alpha/beta); equals D2 beta=1",
    "j_d2_a1_b2_mmdt": "generalized D2, alpha=1, beta=2, groomed",
    "j_m2_b1_mmdt": "M2 = 1e3 / 1e2 (minimum-angle ECFs), beta=1, groomed",
    "j_m2_b2_mmdt": "M2, beta=2, groomed",
    "j_n2_b1_mmdt": "N2 = 2e3 / (1e2)^2, beta=1, groomed",
    "j_n2_b2_mmdt": "N2, beta=2, groomed",
    "j_mass_mmdt": "jet mass after mMDT = soft drop beta=0, z_cut=0.1, R0=0.8 (GeV)",
    "j_multiplicity": "number of (ungroomed) jet constituents",
}

# Per-jet extras written next to the features (all float32, shape (n,) unless noted).
EXTRAS: tuple[str, ...] = ("jet_pt", "jet_eta", "jet_phi", "jet_mass", "truth_pt")

# Annuli in Delta R around the jet axis for the ring pT sums (the regression inputs).
N_RINGS = 15
RING_MAX_DR = 0.8
