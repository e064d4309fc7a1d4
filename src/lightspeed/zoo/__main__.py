"""Rebuild the shipped zoo models: ``python -m lightspeed.zoo [--constituents FILE] [--out DIR]``.

Trains every recipe on the shipped jet sample (the DeepSets tagger on a generated
file with constituents, e.g. ``lightspeed data jets --n 20000 --seed 7
--constituents 30 -o FILE``) and writes ``<name>.onnx`` + ``<name>.json`` to DIR
(default: the package's ``zoo/models``), printing the float metrics. The recurrent
``sequence_rnn`` trains on its own generated time series (``--only sequence_rnn``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lightspeed.errors import LightspeedError


def main(argv: list[str] | None = None) -> int:
    from lightspeed import zoo
    from lightspeed.data import load_jets
    from lightspeed.zoo._common import SPLIT_SEED, TEST_FRACTION

    parser = argparse.ArgumentParser(prog="python -m lightspeed.zoo", description=__doc__)
    parser.add_argument(
        "--out",
        default=str(zoo.MODELS_DIR),
        help="output directory (default: the package's models)",
    )
    parser.add_argument(
        "--constituents", help="jet file with >= 30 constituents per jet, for the DeepSets tagger"
    )
    parser.add_argument("--only", help="comma-separated model names to train (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed (default 0)")
    args = parser.parse_args(argv)
    names = (
        args.only.split(",")
        if args.only
        else [
            "jet_tagger",
            "autoencoder",
            "facile",
            "deepsets",
            "jedinet",
            "sequence_rnn",
            "transformer",
        ]
    )
    try:
        for name in names:
            kwargs = {"seed": args.seed}
            if name in zoo.CONSTITUENT_MODELS:
                if not args.constituents:
                    print(f"{name}: skipped (pass --constituents FILE)")
                    continue
                kwargs["sample"] = load_jets(args.constituents)
            card = zoo.train(name, args.out, **kwargs)
            # the same metrics for the fixed-point emulation at auto precision
            split = (
                kwargs["sample"].split(TEST_FRACTION, SPLIT_SEED) if "sample" in kwargs else None
            )
            onnx_path = Path(args.out) / f"{name}.onnx"
            card.metrics_fixed = zoo.evaluate(
                name,
                split[1] if split else None,
                path=onnx_path,
                quantized=True,
                calibration=split[0] if split else None,
            )
            card.save(onnx_path.with_suffix(".json"))
            for label, metrics in (("float", card.metrics), ("fixed", card.metrics_fixed)):
                shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
                print(f"{name} [{label}]: {shown}")
    except LightspeedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
