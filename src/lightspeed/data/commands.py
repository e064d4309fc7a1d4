"""`lightspeed data ...`: generate and inspect jet samples (argparse only at import time)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser(
        "data",
        help="physics workloads: generate boosted jets (Pythia8 + FastJet), inspect jet files",
        description="Physics workloads: generate boosted jets with Pythia8 + FastJet, inspect jet files.",
    )
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    jets = sub.add_parser(
        "jets",
        help="generate labelled boosted jets (g, q, W, Z, top) with the 16 hls4ml features",
        description=(
            "Generate pp -> jets at 13 TeV with Pythia8, cluster anti-kT R=0.8 with FastJet, keep the "
            "leading jet matched to its parton/boson/top, and compute the 16 hls4ml features. Classes "
            "are balanced. Ctrl-C keeps finished chunks in OUTPUT.parts/; rerun the same command to resume. "
            "Needs: pip install 'pythia8mc==8.317.2' fastjet awkward"
        ),
    )
    jets.add_argument(
        "--n",
        type=int,
        required=True,
        help="number of jets in total (split evenly over the classes)",
    )
    jets.add_argument(
        "-o", "--output", required=True, help="output file: .h5/.hdf5 (HDF5) or .parquet"
    )
    jets.add_argument(
        "--seed",
        type=int,
        default=1,
        help="run seed; each chunk's Pythia seed derives from it (default 1)",
    )
    jets.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (0: run in this process; default 1)",
    )
    jets.add_argument(
        "--classes",
        default="g,q,w,z,t",
        help="comma-separated subset of g,q,w,z,t (default all five)",
    )
    jets.add_argument(
        "--constituents",
        type=int,
        default=0,
        metavar="N",
        help="also store the N highest-pT constituents (pT, eta, phi) per jet, zero-padded (default 0: none)",
    )
    jets.add_argument(
        "--chunk-size",
        type=int,
        default=500,
        help="jets per work unit and per resume step (default 500)",
    )
    jets.add_argument(
        "--pthat-min",
        type=float,
        default=500.0,
        help="Pythia PhaseSpace:pTHatMin in GeV (default 500)",
    )
    jets.add_argument(
        "--pthat-max",
        type=float,
        default=1000.0,
        help="Pythia PhaseSpace:pTHatMax in GeV (default 1000)",
    )
    jets.add_argument(
        "--mpi",
        action="store_true",
        help="switch multiparton interactions on (underlying event; about 2x slower; default off)",
    )
    jets.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    jets.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    jets.set_defaults(func=_cmd_jets)

    info = sub.add_parser(
        "info",
        help="summarise a jet file (jets per class, soft-drop mass median and peak)",
        description="Summarise a lightspeed or hls4ml jet file; with no FILE, the shipped default sample.",
    )
    info.add_argument(
        "file",
        nargs="?",
        help="jet file (.h5, .parquet, hls4ml .h5/.csv/.arff); default: shipped sample",
    )
    info.add_argument(
        "--plot", metavar="PNG", help="also write the soft-drop mass plot per class to PNG"
    )
    info.set_defaults(func=_cmd_info)
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])


def _cmd_jets(args: argparse.Namespace) -> int:
    from lightspeed.data.jets import JetGenConfig, PhysicsConfig, class_names, generate_jets

    physics = PhysicsConfig(
        pthat_min=args.pthat_min,
        pthat_max=args.pthat_max,
        mpi=args.mpi,
        n_constituents=args.constituents,
    )
    config = JetGenConfig(
        n_jets=args.n,
        seed=args.seed,
        classes=class_names([c.strip() for c in args.classes.split(",") if c.strip()]),
        chunk_size=args.chunk_size,
        physics=physics,
    )
    path = generate_jets(
        args.output,
        config,
        workers=args.workers,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    print(f"wrote {args.n} jets to {path}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from lightspeed.data.io import default_sample_path, load_jets
    from lightspeed.data.plots import mass_summary, plot_mass

    path = args.file or default_sample_path()
    sample = load_jets(path)
    print(f"{path}: {len(sample)} jets, {sample.features.shape[1]} features")
    for row in mass_summary(sample):
        print(
            f"  {row['class']:>2}: {row['n']:6d} jets, soft-drop mass median {row['median']:7.1f} GeV, "
            f"peak {row['peak']:7.1f} GeV"
        )
    if args.plot:
        print(f"wrote {plot_mass(sample, args.plot)}")
    return 0
