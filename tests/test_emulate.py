import numpy as np
import pytest

import lightspeed
from lightspeed.errors import InputError
from lightspeed.fixed import FixedType, quantize_float, requantize, to_float
from lightspeed.ir import Graph, Node, infer_shapes


@pytest.fixture
def q(mlp, rng):
    return lightspeed.quantize(mlp, "auto", calibration=rng.normal(0, 1, (200, 16)))


@pytest.mark.parametrize(
    "x, match",
    [
        (np.zeros(16), "add a batch axis"),
        (np.zeros((3, 17)), "expected \\(batch, 16\\)"),
        (np.full((2, 16), np.inf), "NaN/Inf value"),
        (np.zeros((2, 16), dtype=complex), "dtype"),
    ],
)
def test_bad_inputs(q, x, match):
    with pytest.raises(InputError, match=match):
        q.predict(x)


def test_wrong_input_names(q):
    with pytest.raises(InputError, match="missing"):
        q.predict({"nope": np.zeros((1, 16))})


def test_trace_keeps_every_tensor(q, rng):
    env = q.run({"x": rng.normal(0, 1, (5, 16))}, trace=True)
    assert set(env) >= {"x", "h0", "a0", "h3"}
    assert env["h0"].t == q.precision["fc0"]["result"]


def test_dense_matches_reference_semantics(rng):
    """The emulator's dense equals a literal per-sample loop of the contract."""
    w = rng.normal(0, 1, (6, 3))
    b = rng.normal(0, 1, 3)
    g = infer_shapes(
        Graph(
            "d",
            {"x": (6,)},
            ["y"],
            [Node("fc", "dense", ["x"], ["y"], {}, {"weight": w, "bias": b})],
        )
    )
    cfg = {"layers": {"fc": {"weight": "ap_fixed<8,2,RND>", "bias": "ap_fixed<8,2>",
                             "accum": "ap_fixed<10,4,RND_CONV,SAT>", "result": "ap_fixed<8,4,RND,SAT_SYM>"}},
           "inputs": {"x": "ap_fixed<8,3,TRN,SAT>"}}  # fmt: skip
    q = lightspeed.quantize(g, "ap_fixed<16,6>", config=cfg)
    x = rng.normal(0, 3, (200, 6))
    got = q.predict(x)
    p = q.precision["fc"]
    xt = q.input_types["x"]
    xm = quantize_float(x, xt)
    wm, bm = q.qparams["fc"]["weight"], q.qparams["fc"]["bias"]
    acc_t = p["accum"]
    want = np.zeros((200, 3))
    for s in range(200):
        for j in range(3):
            acc = int(requantize(np.array([bm[j]]), p["bias"].frac, acc_t)[0])
            for i in range(6):
                prod = requantize(
                    np.array([int(xm[s, i]) * int(wm[i, j])]), xt.frac + p["weight"].frac, acc_t
                )
                acc = int(requantize(np.array([acc + int(prod[0])]), acc_t.frac, acc_t)[0])
            want[s, j] = to_float(
                requantize(np.array([acc]), acc_t.frac, p["result"]), p["result"]
            )[0]
    assert np.array_equal(got, want)


def test_input_quantization_uses_input_type(rng):
    g = infer_shapes(Graph("i", {"x": (3,)}, ["y"], [Node("r", "relu", ["x"], ["y"])]))
    q = lightspeed.quantize(g, "ap_fixed<8,3,RND,SAT>")
    y = q.predict(np.array([[100.0, 0.30, -1.0]]))
    t = FixedType(8, 3, True, "RND", "SAT")
    assert y[0, 0] == t.max_value and y[0, 1] == 0.3125 and y[0, 2] == 0.0
