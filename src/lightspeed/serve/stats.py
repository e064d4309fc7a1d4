"""ModelStatistics in Triton's layout, as a plain dict (HTTP JSON) or protobuf (gRPC)."""

from __future__ import annotations


def model_statistics(model) -> dict:
    s = model.scheduler.stats

    def d(count: int, ns: int) -> dict:
        return {"count": count, "ns": ns}

    return {
        "name": model.name,
        "version": model.version_str,
        "last_inference": s.last_inference_ms,
        "inference_count": s.inference_count,
        "execution_count": s.execution_count,
        "inference_stats": {
            "success": d(s.success_count, s.success_ns),
            "fail": d(s.fail_count + s.rejected_count, s.fail_ns),
            "queue": d(s.queue_count, s.queue_ns),
            "compute_input": d(s.input_count, s.input_ns),
            "compute_infer": d(s.infer_count, s.infer_ns),
            "compute_output": d(s.output_count, s.output_ns),
            "cache_hit": d(s.cache_hit_count, s.cache_hit_ns),
            "cache_miss": d(s.cache_miss_count, s.cache_miss_ns),
        },
        "batch_stats": [
            {
                "batch_size": size,
                "compute_input": d(b.count, b.input_ns),
                "compute_infer": d(b.count, b.infer_ns),
                "compute_output": d(b.count, b.output_ns),
            }
            for size, b in sorted(s.batches.items())
        ],
    }


def select_models(core, name: str, version: str) -> list:
    """Models a statistics request covers: all, one model's versions, or one version."""
    if not name:
        return core.loaded()
    if version:
        return [core.get(name, version)]
    core.get(name)  # raises NOT_FOUND/UNAVAILABLE for an unknown model
    return [m for m in core.loaded() if m.name == name]
