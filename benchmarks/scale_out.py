"""Scale-out benchmark: offline inference vs Dask workers, and vs server processes.

Runs, in one go on this machine:
  (a) the jet tagger (bit-exact emulator) over a Parquet dataset of N jets on a
      LocalCluster with 1 and 2 worker processes;
  (b) the same rows sent through 1 and 2 `lightspeed serve` processes, the
      client spreading partitions over them (least outstanding requests).
Writes benchmarks/results/scale_out.json and prints a Markdown table.

    python benchmarks/scale_out.py [--rows 400000] [--partitions 16]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightspeed
from lightspeed.data import load_default_jets
from lightspeed.data.schema import FEATURES
from lightspeed.zoo import model_path


def _dataset(tmp: Path, rows: int, partitions: int) -> Path:
    import dask.dataframe as dd
    import pandas as pd

    base = load_default_jets().features
    x = np.tile(base, (int(np.ceil(rows / len(base))), 1))[:rows]
    path = tmp / "jets.parquet"
    dd.from_pandas(pd.DataFrame(x, columns=list(FEATURES)), npartitions=partitions).to_parquet(
        str(path), write_index=False
    )
    return path


def _time_dask(source: Path, model: str, workers: int, out: Path) -> tuple[float, float]:
    """(startup seconds, steady-state seconds): the cluster starts and every worker loads
    the model before the clock starts, as in a long-running analysis facility."""
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    from lightspeed.dask import predict_dataframe, warm

    t0 = time.perf_counter()
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        client.run(warm, model)  # build the runner (load the model / connect) on every worker
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        ddf = dd.read_parquet(str(source))
        predict_dataframe(ddf, model, list(FEATURES)).to_parquet(str(out), write_index=False)
        return startup, time.perf_counter() - t1


def main() -> int:
    # one compute thread per process, so "2 workers" means 2 cores' worth of work, not 4
    for var in ("LIGHTSPEED_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "scale_out.json"))
    args = ap.parse_args()

    from tests.scale.servers import serve

    tmp = Path(tempfile.mkdtemp(prefix="ls-scale-"))
    jets = load_default_jets()
    q = lightspeed.quantize(
        lightspeed.load(model_path("jet_tagger")), "auto", calibration=jets.features[:2000]
    )
    compiled = q.save(tmp / "compiled")
    from lightspeed.cli import main as cli

    cli(
        [
            "repo",
            "add",
            str(compiled),
            str(tmp / "repo"),
            "--name",
            "jet",
            "--max-batch-size",
            "4096",
        ]
    )
    source = _dataset(tmp, args.rows, args.partitions)
    results = {
        "rows": args.rows,
        "partitions": args.partitions,
        "cores": os.cpu_count(),
        "dask": [],
        "servers": [],
    }

    for workers in (1, 2):
        start, secs = _time_dask(
            source, str(compiled), workers, tmp / f"out_dask_{workers}.parquet"
        )
        results["dask"].append(
            {
                "workers": workers,
                "startup_s": start,
                "seconds": secs,
                "rows_per_s": args.rows / secs,
            }
        )
        print(f"dask emulator, {workers} worker(s): {args.rows / secs:,.0f} rows/s", flush=True)

    for n in (1, 2):
        with serve(tmp / "repo", n=n) as servers:
            spec = "grpc://" + ",".join(a for a, _ in servers) + "/jet"
            start, secs = _time_dask(source, spec, 2, tmp / f"out_srv_{n}.parquet")
        results["servers"].append(
            {
                "servers": n,
                "dask_workers": 2,
                "startup_s": start,
                "seconds": secs,
                "rows_per_s": args.rows / secs,
            }
        )
        print(f"through {n} server(s): {args.rows / secs:,.0f} rows/s", flush=True)

    d1, d2 = results["dask"][0]["rows_per_s"], results["dask"][1]["rows_per_s"]
    s1, s2 = results["servers"][0]["rows_per_s"], results["servers"][1]["rows_per_s"]
    results["efficiency"] = {"dask_2_workers": d2 / (2 * d1), "servers_2": s2 / (2 * s1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print("\n| setup | rows/s | parallel efficiency |\n|---|---:|---:|")
    print(f"| Dask LocalCluster, 1 worker (emulator) | {d1:,.0f} | — |")
    print(
        f"| Dask LocalCluster, 2 workers (emulator) | {d2:,.0f} | {results['efficiency']['dask_2_workers']:.2f} |"
    )
    print(f"| 2 Dask workers → 1 server | {s1:,.0f} | — |")
    print(f"| 2 Dask workers → 2 servers | {s2:,.0f} | {results['efficiency']['servers_2']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
