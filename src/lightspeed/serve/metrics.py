"""Prometheus text exposition with Triton's metric names.

Rendered on demand from the per-model counters the schedulers keep, so
serving requests costs nothing extra for metrics. Averages a dashboard wants
(batch size = nv_inference_count / nv_inference_exec_count, queue time per
request) are ratios of these counters.
"""

from __future__ import annotations

from lightspeed.serve.batcher import LATENCY_BOUNDS_NS

_COUNTERS = (
    ("nv_inference_request_success", "Number of successful inference requests, all batch sizes"),
    ("nv_inference_request_failure", "Number of failed inference requests, all batch sizes"),
    ("nv_inference_count", "Number of inferences performed (batch rows, not requests)"),
    ("nv_inference_exec_count", "Number of model executions performed (batches)"),
    ("nv_inference_request_duration_us", "Cumulative inference request duration in microseconds"),
    ("nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds"),
    (
        "nv_inference_compute_input_duration_us",
        "Cumulative compute input (batch merge) duration in microseconds",
    ),
    (
        "nv_inference_compute_infer_duration_us",
        "Cumulative compute inference duration in microseconds",
    ),
    (
        "nv_inference_compute_output_duration_us",
        "Cumulative compute output (batch split) duration in microseconds",
    ),
    ("nv_inference_rejected_count", "Requests rejected because the model queue was full"),
    ("nv_cache_num_hits_per_model", "Requests answered from the response cache"),
    ("nv_cache_num_misses_per_model", "Requests looked up in the response cache and not found"),
)


def _values(s) -> dict[str, float]:
    return {
        "nv_inference_request_success": s.success_count,
        "nv_inference_request_failure": s.fail_count + s.rejected_count,
        "nv_inference_count": s.inference_count,
        "nv_inference_exec_count": s.execution_count,
        "nv_inference_request_duration_us": (s.success_ns + s.fail_ns) // 1000,
        "nv_inference_queue_duration_us": s.queue_ns // 1000,
        "nv_inference_compute_input_duration_us": s.input_ns // 1000,
        "nv_inference_compute_infer_duration_us": s.infer_ns // 1000,
        "nv_inference_compute_output_duration_us": s.output_ns // 1000,
        "nv_inference_rejected_count": s.rejected_count,
        "nv_cache_num_hits_per_model": s.cache_hit_count,
        "nv_cache_num_misses_per_model": s.cache_miss_count,
    }


def render(models) -> str:
    """Prometheus text for an iterable of LoadedModel."""
    models = list(models)
    lines: list[str] = []
    labels = {m: f'model="{m.name}",version="{m.version_str}"' for m in models}
    values = {m: _values(m.scheduler.stats) for m in models}
    for name, help_text in _COUNTERS:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} counter")
        lines += [f"{name}{{{labels[m]}}} {values[m][name]}" for m in models]
    lines.append("# HELP nv_inference_pending_request_count Requests waiting in the model queue")
    lines.append("# TYPE nv_inference_pending_request_count gauge")
    lines += [
        f"nv_inference_pending_request_count{{{labels[m]}}} {m.scheduler.queued}" for m in models
    ]

    name = "lightspeed_inference_request_failure"
    lines.append(
        f"# HELP {name} Failed inference requests by status (the client's or the server's fault)"
    )
    lines.append(f"# TYPE {name} counter")
    for m in models:
        for reason, count in sorted(m.scheduler.stats.fail_reasons.items()):
            lines.append(f'{name}{{{labels[m]},reason="{reason}"}} {count}')

    name = "nv_inference_request_duration_ms"
    lines.append(f"# HELP {name} Successful request latency (queue + compute) in milliseconds")
    lines.append(f"# TYPE {name} histogram")
    for m in models:
        s = m.scheduler.stats
        cum = 0
        for bound, count in zip(LATENCY_BOUNDS_NS, s.latency_hist, strict=False):
            cum += count
            lines.append(f'{name}_bucket{{{labels[m]},le="{bound / 1e6:g}"}} {cum}')
        cum += s.latency_hist[-1]
        lines.append(f'{name}_bucket{{{labels[m]},le="+Inf"}} {cum}')
        lines.append(f"{name}_sum{{{labels[m]}}} {s.success_ns / 1e6:.3f}")
        lines.append(f"{name}_count{{{labels[m]}}} {cum}")

    name = "nv_inference_batch_size"
    lines.append(f"# HELP {name} Rows per model execution (the dynamic batcher's batch sizes)")
    lines.append(f"# TYPE {name} histogram")
    for m in models:
        s = m.scheduler.stats
        bounds = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536]
        sizes = sorted(s.batches.items())
        total = sum(b.count for _, b in sizes)
        rows = sum(k * b.count for k, b in sizes)
        for bound in bounds:
            cum = sum(b.count for k, b in sizes if k <= bound)
            lines.append(f'{name}_bucket{{{labels[m]},le="{bound}"}} {cum}')
        lines.append(f'{name}_bucket{{{labels[m]},le="+Inf"}} {total}')
        lines.append(f"{name}_sum{{{labels[m]}}} {rows}")
        lines.append(f"{name}_count{{{labels[m]}}} {total}")
    return "\n".join(lines) + "\n"
