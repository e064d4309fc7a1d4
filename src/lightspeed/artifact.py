"""The compiled-model directory that later stages load without the original framework.

Layout::

    OUTDIR/manifest.json   format tag, graph (nodes, attrs, shapes), every type as a string
    OUTDIR/params.npz      float parameters   ("<node>/<param>")
    OUTDIR/qparams.npz     integer parameters ("<node>/<param>")
    OUTDIR/report.json     the per-layer report at compile time

Writes go to a temporary sibling directory that is renamed into place only
when complete, so a failed compile never leaves a directory that looks good.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lightspeed.errors import ArtifactError
from lightspeed.files import atomic_dir
from lightspeed.fixed import parse_type
from lightspeed.ir.graph import Graph, Node

if TYPE_CHECKING:
    from lightspeed.quantize.model import QuantizedModel


FORMAT = "lightspeed-compiled"
VERSION = 1


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def graph_to_dict(g: Graph) -> dict[str, Any]:
    return {
        "name": g.name,
        "inputs": {k: list(v) for k, v in g.inputs.items()},
        "outputs": list(g.outputs),
        "nodes": [
            {
                "name": n.name,
                "op": n.op,
                "inputs": n.inputs,
                "outputs": n.outputs,
                "attrs": _jsonable(n.attrs),
                "types": {r: str(t) for r, t in n.types.items()},
            }
            for n in g.nodes
        ],
        "shapes": {k: list(v) for k, v in g.shapes.items()},
    }


def graph_from_dict(d: dict[str, Any], params: dict[str, dict[str, np.ndarray]]) -> Graph:
    nodes = [
        Node(
            n["name"],
            n["op"],
            list(n["inputs"]),
            list(n["outputs"]),
            dict(n["attrs"]),
            params.get(n["name"], {}),
            {r: parse_type(t) for r, t in n.get("types", {}).items()},
        )
        for n in d["nodes"]
    ]
    return Graph(
        d["name"],
        {k: tuple(v) for k, v in d["inputs"].items()},
        list(d["outputs"]),
        nodes,
        {k: tuple(v) for k, v in d["shapes"].items()},
    )


def _pack(nested: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    out = {}
    for node, ps in nested.items():
        for k, v in ps.items():
            a = np.asarray(v)
            out[f"{node}/{k}"] = a.astype(str) if a.dtype == object else a  # exact big ints as text
    return out


def _unpack(npz, as_int: bool) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for key in npz.files:
        node, _, name = key.rpartition("/")
        a = npz[key]
        if a.dtype.kind == "U":
            a = np.array([int(s) for s in a.flat], dtype=object).reshape(a.shape)
        out.setdefault(node, {})[name] = a
    return out


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool


def model_hash(q: QuantizedModel) -> str:
    """Content hash of a quantized model (graph, types, integer params): firmware checks it."""
    h = hashlib.sha256()
    h.update(json.dumps(graph_to_dict(q.graph), sort_keys=True).encode())
    h.update(
        json.dumps(
            {n: {r: str(t) for r, t in p.items()} for n, p in q.precision.items()}, sort_keys=True
        ).encode()
    )
    h.update(json.dumps({n: str(t) for n, t in q.input_types.items()}, sort_keys=True).encode())
    for key, a in sorted(_pack(q.qparams).items()):
        h.update(key.encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def save_compiled(
    q: QuantizedModel, outdir: str | Path, source: dict[str, Any] | None = None
) -> Path:
    outdir = Path(outdir)
    if outdir.exists() and not is_compiled_dir(outdir) and any(outdir.iterdir()):
        raise ArtifactError(
            f"{outdir} exists and is not a lightspeed compiled model; choose an empty or new directory"
        )
    with atomic_dir(outdir) as tmp:
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "model_hash": model_hash(q),
            "graph": graph_to_dict(q.graph),
            "input_types": {k: str(t) for k, t in q.input_types.items()},
            "precision": {n: {r: str(t) for r, t in p.items()} for n, p in q.precision.items()},
            "tensor_types": {k: str(t) for k, t in q.tensor_types.items()},
            "default": q.default,
            "options": asdict(q.options),
            "calibration_ranges": {k: list(v) for k, v in q.calibration_ranges.items()},
            "stats": q.stats,
            "source": source or {},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        _savez(tmp / "params.npz", _pack({n.name: n.params for n in q.graph.nodes}))
        _savez(tmp / "qparams.npz", _pack(q.qparams))
        (tmp / "report.json").write_text(json.dumps(q.report(), indent=1))
    return outdir


def is_compiled_dir(path: str | Path) -> bool:
    p = Path(path) / "manifest.json"
    if not p.is_file():
        return False
    try:
        return json.loads(p.read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def read_compiled(path: str | Path) -> tuple[dict[str, Any], str | None]:
    """The fields of a compiled model directory (``QuantizedModel(**fields)``) and its hash.

    :func:`lightspeed.quantize.load_compiled` builds the model from them and
    checks the manifest's hash.
    """
    from lightspeed.ops import AutoOptions

    path = Path(path)
    if path.is_file():
        raise ArtifactError(
            f"{path} is a model file; compile it first: `lightspeed compile {path} -o compiled/`"
        )
    if not path.is_dir():
        raise ArtifactError(
            f"{path} does not exist; make it with `lightspeed compile MODEL.onnx -o {path}`"
        )
    if not is_compiled_dir(path):
        raise ArtifactError(
            f"{path} is not a lightspeed compiled model (no valid manifest.json); "
            f"run `lightspeed compile MODEL -o {path}`"
        )
    try:
        m = json.loads((path / "manifest.json").read_text())
        if m.get("version") != VERSION:
            raise ArtifactError(
                f"{path}: compiled with format version {m.get('version')}, expected {VERSION}; recompile"
            )
        with np.load(path / "params.npz", allow_pickle=False) as f:
            params = _unpack(f, as_int=False)
        with np.load(path / "qparams.npz", allow_pickle=False) as f:
            qparams = _unpack(f, as_int=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{path}: compiled model is damaged ({exc}); recompile it") from None
    graph = graph_from_dict(m["graph"], params)
    return {
        "graph": graph,
        "precision": {
            n: {r: parse_type(t) for r, t in p.items()} for n, p in m["precision"].items()
        },
        "qparams": {n.name: qparams.get(n.name, {}) for n in graph.nodes},
        "tensor_types": {k: parse_type(v) for k, v in m["tensor_types"].items()},
        "options": AutoOptions(**m.get("options", {})),
        "default": m.get("default") or "auto",
        "calibration_ranges": {k: tuple(v) for k, v in m.get("calibration_ranges", {}).items()},
        "stats": m.get("stats", {}),
    }, m.get("model_hash")
