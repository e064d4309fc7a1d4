"""CLI verbs: ``lightspeed bench loadgen | sonic | report`` (argparse only at import)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    b = subparsers.add_parser(
        "bench",
        help="benchmarks: MLPerf LoadGen scenarios, SONIC capacity study, HTML report",
        description="Measure a model as MLPerf's LoadGen sees it, measure how many client jobs "
        "one inference server sustains, and turn results into one HTML page.",
    )
    bsub = b.add_subparsers(dest="bench_command", metavar="ACTION")
    _register_loadgen(bsub)
    _register_sonic(bsub)
    _register_report(bsub)
    b.set_defaults(func=lambda args: (b.print_help(), 2)[1])


def _register_loadgen(bsub) -> None:
    p = bsub.add_parser(
        "loadgen",
        help="run an MLPerf LoadGen scenario over the jet data or your own",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run one MLPerf scenario with MLCommons' LoadGen (pip install "
        "'lightspeed[bench]') against a compiled model in this process or a model on a "
        "Triton-compatible server, over jets of the shipped sample's test split, your own "
        "inputs (--data X.npy [--labels y.npy]) or synthetic inputs (--synthetic).\n\n"
        "Performance mode reports samples/s, latency percentiles and LoadGen's VALID/INVALID "
        "verdict with the reason; accuracy mode checks '99% of FP32': the target's top-1 "
        "accuracy must be >= 0.99 x the float reference model's, on the same samples.\n"
        "Runs are short (min duration 2 s, small min query counts); MLPerf submissions need "
        "600 s. Rates left unset are sized from a quick probe so runs are valid; if an "
        "automatic rate makes a run INVALID it is retried once.\n"
        "Writes OUTDIR/performance/ and OUTDIR/accuracy/ (LoadGen's own mlperf_log_* files) "
        "and OUTDIR/summary.json.",
    )
    p.add_argument(
        "--scenario",
        required=True,
        choices=("singlestream", "multistream", "server", "offline"),
        help="singlestream: one sample at a time (latency); multistream: fixed-size "
        "queries back to back; server: Poisson arrivals at --target-qps under a latency "
        "bound; offline: all samples at once (throughput)",
    )
    p.add_argument(
        "--target",
        required=True,
        help="inprocess:COMPILED_DIR (bit-exact emulator in this process) or "
        "grpc://HOST:PORT/MODEL (a running `lightspeed serve` or Triton)",
    )
    p.add_argument("-o", "--output", default="loadgen_results", help="output directory")
    p.add_argument(
        "--mode",
        choices=("performance", "accuracy", "both"),
        default="both",
        help="LoadGen test mode (default both: a performance run, then an accuracy run)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="your inputs as .npy/.npz (samples first, the model's input shape after), or a "
        "jet file (lightspeed HDF5/Parquet or hls4ml files); default: the shipped jet "
        "sample's test split",
    )
    p.add_argument(
        "--labels",
        default=None,
        help=".npy of integer class labels for --data arrays; without them accuracy mode "
        "reports only the agreement with the float reference",
    )
    p.add_argument(
        "--synthetic",
        action="store_true",
        help="random N(0,1) inputs of the model's input shape (--count of them, default "
        "4096): measures performance only, accuracy is not measured",
    )
    p.add_argument("--count", type=int, default=0, help="samples in the library (default 0 = all)")
    p.add_argument(
        "--performance-sample-count",
        type=int,
        default=2048,
        help="samples LoadGen keeps loaded for performance runs (default 2048)",
    )
    p.add_argument(
        "--min-duration-ms",
        type=int,
        default=2000,
        help="LoadGen min_duration_ms (default 2000; MLPerf's official value is 600000)",
    )
    p.add_argument(
        "--min-query-count",
        type=int,
        default=None,
        help="LoadGen min_query_count (default per scenario: singlestream 256, multistream 662, "
        "server 1024, offline 1)",
    )
    p.add_argument(
        "--max-duration-ms",
        type=int,
        default=60000,
        help="LoadGen max_duration_ms: hard cap on a run (default 60000)",
    )
    p.add_argument(
        "--target-qps",
        type=float,
        default=None,
        help="server: queries per second to issue (default: half the measured one-at-a-time rate)",
    )
    p.add_argument(
        "--target-latency-ms",
        type=float,
        default=10.0,
        help="server: latency bound on the 99th percentile in ms (default 10)",
    )
    p.add_argument(
        "--expected-qps",
        type=float,
        default=None,
        help="offline: LoadGen sizes its one query as expected-qps x min duration; must "
        "exceed the achieved rate (default: 1.5x the measured batch rate)",
    )
    p.add_argument(
        "--samples-per-query",
        type=int,
        default=8,
        help="multistream: samples per query (default 8)",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=256,
        help="offline: samples per request (default 256; capped by the served max_batch_size)",
    )
    p.add_argument(
        "--reference",
        default=None,
        help="float reference model (.onnx) for the accuracy check; default: the compiled "
        "model's own float graph (inprocess) or the zoo jet_tagger (grpc)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="seconds to wait for a gRPC server before failing (default 5)",
    )
    p.add_argument("--seed", type=int, default=0, help="sample choice and LoadGen RNG seed")
    p.set_defaults(func=_loadgen)


def _register_sonic(bsub) -> None:
    p = bsub.add_parser(
        "sonic",
        help="capacity study: event throughput of N client jobs sharing one server",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run N = 1, 2, 4, ... client processes, each an emulated event-processing "
        "job (CPU work + one inference request per event) against one server, then the same "
        "jobs with local inference. Fits the SONIC model\n"
        "  t = (1-p)*t_CPU + t_GPU*[1 + max(0, N/N_GPU - t_ideal/t_GPU)] + t_latency\n"
        "and reports the saturation point, the speed-up over all-local inference, and plots.\n"
        "Writes OUTDIR/sonic.json, sonic_throughput.png, sonic_latency.png.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--model",
        help="compiled model dir or .onnx: served by a fresh `lightspeed serve` on a free "
        "127.0.0.1 port for the study (and run locally for the baseline)",
    )
    src.add_argument("--target", help="grpc://HOST:PORT/MODEL of a running server")
    p.add_argument(
        "--local-model",
        default=None,
        help="model for the all-local baseline (default: --model; required with --target "
        "unless --no-local)",
    )
    p.add_argument(
        "--clients",
        default="1,2,4,8",
        help="comma-separated numbers of concurrent client processes (default 1,2,4,8)",
    )
    p.add_argument("--cpu-ms", type=float, default=2.0, help="CPU work per event in ms (default 2)")
    p.add_argument(
        "--work",
        choices=("sleep", "spin"),
        default="sleep",
        help="sleep (default): wait, emulating clients on their own cores; spin: burn this "
        "machine's CPU (use when it has more cores than clients + server)",
    )
    p.add_argument(
        "--mode",
        choices=("sync", "async"),
        default="sync",
        help="sync: work, then a blocking request; async: send, work, then wait (overlap)",
    )
    p.add_argument(
        "--client",
        choices=("tritonclient", "sonic"),
        default="tritonclient",
        help="tritonclient (default): blocking tritonclient.grpc calls; sonic: "
        "lightspeed.client.SonicClient on an asyncio loop (retries, one request per event)",
    )
    p.add_argument(
        "--batch", type=int, default=1, help="jets per request, one request per event (1)"
    )
    p.add_argument(
        "--duration", type=float, default=3.0, help="measured seconds per point (default 3)"
    )
    p.add_argument(
        "--warmup", type=float, default=0.5, help="unmeasured seconds first (default 0.5)"
    )
    p.add_argument(
        "--no-local", action="store_true", help="skip the all-local baseline (no speed-up)"
    )
    p.add_argument(
        "--server-instances",
        type=int,
        default=1,
        help="instance_group count of the served model, = N_GPU in the model (default 1)",
    )
    p.add_argument("-o", "--output", default="sonic_results", help="output directory")
    p.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for a server (default 5)"
    )
    p.set_defaults(func=_sonic)


def _register_report(bsub) -> None:
    p = bsub.add_parser(
        "report",
        help="one self-contained HTML page from a results directory",
        description="Collect every result under RESULTS_DIR (LoadGen summary.json files, "
        "sonic.json, demo_results.json, serving benchmark JSON) into one HTML page with "
        "tables and embedded PNG plots: latency CDFs, throughput vs concurrency, capacity "
        "curve, float vs fixed accuracy, firmware resources.",
    )
    p.add_argument("results", metavar="RESULTS_DIR", help="directory searched recursively")
    p.add_argument("-o", "--output", default="report.html", help="HTML file to write")
    p.add_argument("--title", default="lightspeed benchmark report", help="page title")
    p.set_defaults(func=_report)


def _parse_clients(text: str) -> list[int]:
    from lightspeed.errors import ConfigError

    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(
            f"--clients {text!r} must be comma-separated integers, e.g. 1,2,4,8"
        ) from None


def _loadgen(args) -> int:
    from rich.console import Console

    from lightspeed.bench.loadgen import LoadgenConfig, markdown_table, run_loadgen

    console = Console(stderr=True)
    cfg = LoadgenConfig(
        scenario=args.scenario,
        target=args.target,
        outdir=args.output,
        mode=args.mode,
        data=args.data,
        labels=args.labels,
        synthetic=args.synthetic,
        count=args.count,
        performance_sample_count=args.performance_sample_count,
        min_duration_ms=args.min_duration_ms,
        min_query_count=args.min_query_count,
        max_duration_ms=args.max_duration_ms,
        target_qps=args.target_qps,
        target_latency_ms=args.target_latency_ms,
        expected_qps=args.expected_qps,
        samples_per_query=args.samples_per_query,
        max_batch=args.max_batch,
        reference=args.reference,
        seed=args.seed,
        timeout_s=args.timeout,
    )
    summary = run_loadgen(cfg, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
    print(markdown_table([summary]))
    print(f"\nLoadGen logs and summary.json in {args.output}")
    perf_ok = summary.get("performance", {}).get("validity", "VALID") == "VALID"
    acc_ok = summary.get("accuracy", {}).get("passed", True)
    return 0 if perf_ok and acc_ok else 1


def _sonic(args) -> int:
    from rich.console import Console

    from lightspeed.bench.sonic import SonicConfig, markdown_table, run_sonic

    console = Console(stderr=True)
    cfg = SonicConfig(
        model=args.model,
        target=args.target,
        local_model=args.local_model,
        clients=_parse_clients(args.clients),
        cpu_ms=args.cpu_ms,
        work=args.work,
        mode=args.mode,
        client=args.client,
        batch=args.batch,
        duration_s=args.duration,
        warmup_s=args.warmup,
        local=not args.no_local,
        server_instances=args.server_instances,
        outdir=args.output,
        timeout_s=args.timeout,
    )
    result = run_sonic(cfg, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
    print(markdown_table(result))
    print(f"\nsonic.json and plots in {args.output}")
    return 0


def _report(args) -> int:
    from lightspeed.bench.report import write_report

    out = write_report(args.results, args.output, title=args.title)
    print(f"report written to {out}")
    return 0
