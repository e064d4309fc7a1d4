"""SONIC capacity study on this machine: how many client jobs does one server sustain?

N = 1 .. 32 client processes, each an emulated event loop (2 ms of CPU work per event,
emulated by sleeping so that N clients do not compete with the server for this box's
2 cores, then one blocking batch-1 inference request), against one `lightspeed serve`
holding the compiled jet tagger (bit-exact emulator backend, dynamic batching). The
same jobs then run with local inference (the emulator in each process) as the all-local
baseline. Fits the SONIC model and writes:

  benchmarks/results/sonic.json, docs/img/sonic_throughput.png, docs/img/sonic_latency.png

    python benchmarks/sonic_capacity.py               # ~3 min on 2 cores
    python benchmarks/sonic_capacity.py --quick       # N = 1, 2, 4, 8; 1 s per point
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
IMG = ROOT / "docs" / "img"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--clients", default="1,2,4,8,16,32")
    ap.add_argument("--cpu-ms", type=float, default=2.0)
    ap.add_argument("--work", default="sleep", choices=("sleep", "spin"))
    ap.add_argument("--mode", default="sync", choices=("sync", "async"))
    args = ap.parse_args()

    from lightspeed.bench.sonic import SonicConfig, markdown_table, run_sonic

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from loadgen_scenarios import compile_tagger

    clients = [1, 2, 4, 8] if args.quick else [int(v) for v in args.clients.split(",")]
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="ls-sonic-") as tmp:
        compiled = compile_tagger(Path(tmp))
        out = Path(tmp) / "out"
        cfg = SonicConfig(
            model=str(compiled),
            clients=clients,
            cpu_ms=args.cpu_ms,
            work=args.work,
            mode=args.mode,
            duration_s=1.0 if args.quick else 3.0,
            warmup_s=0.5,
            outdir=out,
        )
        result = run_sonic(cfg, progress=lambda m: print(m, flush=True))
        IMG.mkdir(parents=True, exist_ok=True)
        for name in result["plots"]:
            shutil.copy2(out / name, IMG / name)
    result["config"]["model"] = "jet_tagger (zoo) at auto precision, lightspeed emulator backend"
    result["config"]["outdir"] = "docs/img"
    result["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "loadavg_at_end": list(os.getloadavg()),
    }
    result["wall_s"] = time.time() - t0
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sonic.json").write_text(json.dumps(result, indent=1, default=str))
    print(markdown_table(result))
    print(f"\nwrote {RESULTS / 'sonic.json'} and {IMG}/sonic_*.png")


if __name__ == "__main__":
    main()
