"""CLI verbs: ``lightspeed serve`` and ``lightspeed repo add`` (argparse only at import)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a model repository over Triton-compatible gRPC and HTTP",
        description="Serve every model in REPO (Triton layout: REPO/<model>/config.pbtxt and "
        "REPO/<model>/<version>/model.onnx | model.lightspeed/ | model.py) over the KServe v2 / "
        "Triton gRPC and HTTP protocols, with dynamic batching and Prometheus metrics. "
        "SIGINT/SIGTERM stop it gracefully: accepted requests are answered first.",
    )
    p.add_argument("repo", metavar="REPO", help="model repository directory")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; 0.0.0.0 to accept remote clients)",
    )
    p.add_argument(
        "--grpc-port",
        type=int,
        default=8001,
        help="gRPC port (default 8001; 0 = any free port, -1 = disabled)",
    )
    p.add_argument(
        "--http-port",
        type=int,
        default=8000,
        help="HTTP/REST port (default 8000; 0 = any free port, -1 = disabled)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=8002,
        help="Prometheus /metrics port (default 8002; 0 = any free port, -1 = disabled)",
    )
    p.add_argument(
        "--max-message-mb",
        type=float,
        default=256.0,
        help="largest request or response message in MiB (default 256); larger "
        "requests get RESOURCE_EXHAUSTED (gRPC) / 413 (HTTP)",
    )
    p.add_argument(
        "--max-queue-size",
        type=int,
        default=4096,
        help="queued requests per model version when config.pbtxt sets no "
        "default_queue_policy.max_queue_size (default 4096); beyond it requests get "
        "RESOURCE_EXHAUSTED / 503",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for in-flight requests at shutdown (default 30)",
    )
    p.add_argument(
        "--model-control",
        choices=("none", "explicit"),
        default="none",
        help="none: load every model at start (default); explicit: load none, "
        "clients load/unload through the repository API",
    )
    p.add_argument(
        "--ort-threads",
        type=int,
        default=1,
        help="intra-op threads per onnxruntime instance (default 1; parallelism comes "
        "from instance_group.count)",
    )
    p.add_argument(
        "--response-cache-mb",
        type=float,
        default=0.0,
        help="size of the response cache that models with response_cache { enable: true } "
        "use (Triton's --cache-config local,size=N; default 0: none, and such models fail "
        "to load)",
    )
    p.add_argument(
        "--inline-us",
        type=int,
        default=500,
        help="run model executions whose running average CPU time is below this many "
        "microseconds on the network thread instead of a worker thread, until it exceeds "
        "twice that (default 500: handing a Python-heavy execution to a thread costs "
        "150-300 us of GIL hand-over on a busy small box; 0 = always use worker threads)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the ports through SO_REUSEPORT (default 1). Each "
        "worker loads every model and serves the client connections the kernel hands it, "
        "so N workers help only with several client connections. Per worker: statistics "
        "and metrics (worker i serves /metrics on METRICS_PORT+i). Refused with N > 1: "
        "repository load/unload, system shared memory and --model-control explicit",
    )
    p.add_argument(
        "--grpc-frontend",
        default="h2",
        choices=("h2", "grpcio"),
        help="gRPC transport (default h2): 'h2' is lightspeed's own HTTP/2 implementation on "
        "asyncio, about ten times less CPU per call than 'grpcio', the grpc.aio server of "
        "the grpcio package. Both serve the same service and answer identically",
    )
    p.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log verbosity (default INFO)",
    )
    p.add_argument(
        "--log-format",
        default="logfmt",
        choices=("logfmt", "json"),
        help="logs on stderr: logfmt key=value lines (default) or JSON lines",
    )
    p.set_defaults(func=_serve)

    r = subparsers.add_parser(
        "repo",
        help="manage a Triton-layout model repository",
        description="Manage a model repository that both lightspeed serve and NVIDIA Triton load.",
    )
    rsub = r.add_subparsers(dest="repo_command", metavar="ACTION")
    a = rsub.add_parser(
        "add",
        help="add an ONNX file or a compiled lightspeed model to a repository",
        description="Write REPO/NAME/config.pbtxt and REPO/NAME/<version>/ for MODEL. An .onnx "
        "file becomes platform onnxruntime_onnx (or, with --backend python, a Triton "
        "python-backend model.py running onnxruntime); a compiled model directory becomes "
        "backend lightspeed (the bit-exact emulator).",
    )
    a.add_argument(
        "model", metavar="COMPILED_OR_ONNX", help=".onnx file or compiled model directory"
    )
    a.add_argument("repo", metavar="REPO", help="repository directory (created if missing)")
    a.add_argument("--name", required=True, help="model name (the directory under REPO)")
    a.add_argument(
        "--version",
        type=int,
        default=None,
        help="version number (default: one above the highest existing)",
    )
    a.add_argument(
        "--max-batch-size",
        type=int,
        default=None,
        help="max_batch_size (default 1024 when the model's first dimension is free, "
        "else 0 = no batching)",
    )
    a.add_argument(
        "--no-dynamic-batching",
        action="store_true",
        help="leave out dynamic_batching (each request runs alone)",
    )
    a.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=0,
        help="dynamic_batching.max_queue_delay_microseconds: how long a request may "
        "wait for others to join its batch (default 0)",
    )
    a.add_argument(
        "--preferred-batch-size",
        type=int,
        action="append",
        default=[],
        help="dynamic_batching.preferred_batch_size (repeat for several)",
    )
    a.add_argument(
        "--instances",
        type=int,
        default=1,
        help="instance_group count: executions that may run in parallel (default 1)",
    )
    a.add_argument(
        "--kind",
        choices=("cpu", "gpu", "auto"),
        default="cpu",
        help="instance_group kind (default cpu; gpu uses onnxruntime's CUDA provider)",
    )
    a.add_argument(
        "--backend",
        choices=("onnxruntime", "python"),
        default="",
        help="for ONNX: onnxruntime (default, platform onnxruntime_onnx) or python "
        "(a Triton python-backend model.py that runs onnxruntime)",
    )
    a.set_defaults(func=_repo_add)
    r.set_defaults(func=lambda args: (r.print_help(), 2)[1])


def _serve(args) -> int:
    import asyncio

    from lightspeed.serve.logs import setup_logging
    from lightspeed.serve.server import Server, ServerConfig

    setup_logging(args.log_level, args.log_format)
    from lightspeed.serve.server import keep_freed_memory

    keep_freed_memory()  # this process is ours: no page faults through large requests
    config = ServerConfig(
        repository=args.repo,
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        max_message_bytes=int(args.max_message_mb * 1024 * 1024),
        max_queue_size=args.max_queue_size,
        drain_timeout_s=args.drain_timeout,
        load_all=args.model_control == "none",
        ort_threads=args.ort_threads,
        inline_below_us=args.inline_us,
        response_cache_mb=args.response_cache_mb,
        grpc_frontend=args.grpc_frontend,
    )

    async def main() -> None:
        await Server(config).serve_forever()

    import os
    import sys

    from lightspeed.errors import ConfigError

    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: give 1 or more server processes")
    if args.workers > 1 and args.model_control == "explicit":
        raise ConfigError(
            "--model-control explicit needs --workers 1: a repository load would reach "
            "only one worker process"
        )

    # worker threads hand results back through the GIL; the default 5 ms switch interval
    # would let the network thread hold it for that long while a finished batch waits
    sys.setswitchinterval(float(os.environ.get("LIGHTSPEED_SWITCH_INTERVAL", "0.0005")))
    if args.workers > 1:
        from dataclasses import replace

        from lightspeed.serve.workers import run_workers

        # fork before anything starts gRPC or onnxruntime threads in this process
        return run_workers(replace(config, workers=args.workers), args.workers)
    # plain asyncio: grpc.aio's poller integration is slower under uvloop
    asyncio.run(main())
    return 0


def _repo_add(args) -> int:
    from lightspeed.serve.repo_add import EntryOptions, add_model

    opts = EntryOptions(
        max_batch_size=args.max_batch_size,
        dynamic_batching=not args.no_dynamic_batching,
        max_queue_delay_us=args.max_queue_delay_us,
        preferred_batch_sizes=args.preferred_batch_size,
        instances=args.instances,
        kind=args.kind,
        version=args.version,
        backend=args.backend,
    )
    vdir = add_model(args.model, args.repo, args.name, opts)
    print(f"added {args.model} as {vdir}")
    return 0
