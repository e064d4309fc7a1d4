"""Physics checks of a jet sample: soft-drop mass peaks per class and their plot."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lightspeed.data.io import JetSample

MASS_BINS = np.arange(0.0, 302.5, 5.0)


def mass_peak(mass: np.ndarray, lo: float = 40.0) -> float:
    """Centre of the most populated 5 GeV bin above ``lo`` GeV (below it the QCD/grooming spike lives)."""
    counts, edges = np.histogram(mass[mass >= lo], bins=MASS_BINS[lo <= MASS_BINS])
    k = int(np.argmax(counts))
    return float(0.5 * (edges[k] + edges[k + 1]))


def mass_summary(sample: JetSample) -> list[dict]:
    """Per class: number of jets, median and peak of the soft-drop (mMDT) mass in GeV."""
    m = sample.features[:, sample.feature_names.index("j_mass_mmdt")]
    rows = []
    for k, cls in enumerate(sample.class_names):
        mk = m[sample.labels == k]
        if len(mk) == 0:
            continue
        rows.append(
            {"class": cls, "n": len(mk), "median": float(np.median(mk)), "peak": mass_peak(mk)}
        )
    return rows


def plot_mass(sample: JetSample, path: str | os.PathLike[str]) -> Path:
    """Normalised soft-drop mass distributions per class with the W, Z and top masses marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = sample.features[:, sample.feature_names.index("j_mass_mmdt")]
    labels = {"g": "gluon", "q": "light quark", "w": "W", "z": "Z", "t": "top"}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, cls in enumerate(sample.class_names):
        ax.hist(
            m[sample.labels == k],
            bins=list(MASS_BINS),
            histtype="step",
            density=True,
            linewidth=1.6,
            label=labels.get(cls, cls),
        )
    top = ax.get_ylim()[1]
    for value, name, dx, ha in (
        (80.4, "$m_W$", -2, "right"),
        (91.2, "$m_Z$", 2, "left"),
        (172.5, "$m_t$", 2, "left"),
    ):
        ax.axvline(value, color="grey", linestyle=":", linewidth=1)
        ax.text(value + dx, top * 0.95, name, color="grey", ha=ha, va="top")
    ax.set_xlabel("soft-drop (mMDT) jet mass [GeV]")
    ax.set_ylabel("normalised jets / 5 GeV")
    ax.set_title(f"Pythia8 + FastJet, anti-$k_T$ R=0.8, {len(sample)} jets")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
