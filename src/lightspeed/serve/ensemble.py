"""Ensembles: a pipeline of models served as one (``platform: "ensemble"``).

As in Triton, an ensemble has no model file and no instances of its own: each
``ensemble_scheduling`` step sends its tensors to a composing model's scheduler,
so every step keeps its own dynamic batching, instances and statistics, and the
steps run as soon as their inputs exist (independent steps run concurrently).
Tensor names are the ensemble's: ``input_map`` maps a composing model's input to
the ensemble tensor it reads, ``output_map`` its output to the tensor it writes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from lightspeed.serve.errors import ServeError, invalid


@dataclass(frozen=True)
class Step:
    model: str
    version: str  # "" or "-1": the latest
    input_map: tuple[tuple[str, str], ...]  # (model input, ensemble tensor)
    output_map: tuple[tuple[str, str], ...]  # (model output, ensemble tensor)


def ensemble_steps(config, name: str) -> list[Step]:
    """The steps of an ensemble config, checked as a dataflow graph."""
    where = f"ensemble '{name}'"
    if config.HasField("dynamic_batching") or config.HasField("sequence_batching"):
        raise invalid(
            f"{where}: an ensemble has no scheduler of its own; put dynamic_batching on the "
            "composing models"
        )
    steps = []
    for s in config.ensemble_scheduling.step:
        if not s.model_name:
            raise invalid(f"{where}: a step has no model_name")
        version = "" if s.model_version in (0, -1) else str(s.model_version)
        steps.append(
            Step(
                s.model_name,
                version,
                tuple(sorted(s.input_map.items())),
                tuple(sorted(s.output_map.items())),
            )
        )
    if not steps:
        raise invalid(f"{where}: ensemble_scheduling has no step")
    produced = {t.name for t in config.input}
    writers: dict[str, str] = {}
    for step in steps:
        for _, tensor in step.output_map:
            if tensor in produced or tensor in writers:
                raise invalid(
                    f"{where}: tensor '{tensor}' is written twice (by step '{step.model}' and "
                    f"{'an ensemble input' if tensor in produced else repr(writers[tensor])})"
                )
            writers[tensor] = step.model
    available = produced | set(writers)
    for step in steps:
        for model_input, tensor in step.input_map:
            if tensor not in available:
                raise invalid(
                    f"{where}: step '{step.model}' reads '{tensor}' for its input "
                    f"'{model_input}', but no ensemble input or step output has that name"
                )
    for t in config.output:
        if t.name not in writers:
            raise invalid(f"{where}: output '{t.name}' is not written by any step")
    _check_acyclic(steps, set(produced), where)
    return steps


def _check_acyclic(steps: list[Step], ready: set[str], where: str) -> None:
    pending = list(steps)
    while pending:
        runnable = [s for s in pending if all(t in ready for _, t in s.input_map)]
        if not runnable:
            raise invalid(f"{where}: steps {[s.model for s in pending]} wait on each other")
        for s in runnable:
            ready.update(t for _, t in s.output_map)
            pending.remove(s)


def check_composing(
    name: str,
    max_batch_size: int,
    input_types: dict[str, str],
    output_types: dict[str, str],
    steps: list[Step],
    get,
) -> None:
    """Each step's model is loaded and agrees with the ensemble's tensors (at load time).

    ``*_types``: the ensemble's tensors and their datatypes; ``get(name, version)``
    returns a loaded model.
    """
    where = f"ensemble '{name}'"
    dtypes = dict(input_types)
    for step in steps:
        try:
            model = get(step.model, step.version)
        except ServeError as exc:
            raise invalid(
                f"{where}: step model '{step.model}' is not ready ({exc.message}); load it "
                "before the ensemble"
            ) from None
        if max_batch_size > 0 and model.max_batch_size < max_batch_size:
            raise invalid(
                f"{where}: max_batch_size {max_batch_size} exceeds step model "
                f"'{step.model}'s {model.max_batch_size}"
            )
        for model_input, tensor in step.input_map:
            spec = model.inputs.get(model_input)
            if spec is None:
                raise invalid(
                    f"{where}: step '{step.model}' has no input '{model_input}' "
                    f"(its inputs: {list(model.inputs)})"
                )
            if tensor in dtypes and dtypes[tensor] != spec.datatype:
                raise invalid(
                    f"{where}: tensor '{tensor}' is {dtypes[tensor]} but step '{step.model}' "
                    f"input '{model_input}' takes {spec.datatype}"
                )
        for model_output, tensor in step.output_map:
            spec = model.outputs.get(model_output)
            if spec is None:
                raise invalid(
                    f"{where}: step '{step.model}' has no output '{model_output}' "
                    f"(its outputs: {model.output_names})"
                )
            dtypes[tensor] = spec.datatype
    for out, datatype in output_types.items():
        if dtypes.get(out, datatype) != datatype:
            raise invalid(
                f"{where}: output '{out}' is {datatype} in config.pbtxt but the step "
                f"writes {dtypes[out]}"
            )


async def run_steps(
    steps: list[Step], tensors: dict, get, request_id: str, timeout_ns: int
) -> dict:
    """Run the pipeline on ``tensors`` (the ensemble inputs); returns every tensor."""
    tensors = dict(tensors)
    pending = list(steps)
    while pending:
        runnable = [s for s in pending if all(t in tensors for _, t in s.input_map)]
        for s in runnable:
            pending.remove(s)
        results = await asyncio.gather(
            *(_run_step(s, tensors, get, request_id, timeout_ns) for s in runnable)
        )
        for step, out in zip(runnable, results, strict=True):
            for model_output, tensor in step.output_map:
                tensors[tensor] = out[model_output]
    return tensors


async def _run_step(step: Step, tensors: dict, get, request_id: str, timeout_ns: int) -> dict:
    model = get(step.model, step.version)
    inputs = {model_input: tensors[tensor] for model_input, tensor in step.input_map}
    try:
        rows = model.check(inputs, request_id)
        wanted = [o for o, _ in step.output_map]
        return await model.infer(inputs, rows, wanted, timeout_ns, request_id)
    except ServeError as exc:
        raise ServeError(exc.code, f"ensemble step '{step.model}': {exc.message}") from None
