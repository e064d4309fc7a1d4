"""Offline inference on Dask equals a single-process run exactly."""

import numpy as np
import pytest

import lightspeed
from lightspeed.data import load_default_jets
from lightspeed.data.schema import FEATURES
from lightspeed.errors import InputError
from lightspeed.zoo import model_path

dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("dask")
    jets = load_default_jets().subset(slice(0, 3000))
    q = lightspeed.quantize(
        lightspeed.load(model_path("jet_tagger")), "auto", calibration=jets.features[:500]
    )
    q.save(d / "model")
    df = pd.DataFrame(jets.features, columns=list(FEATURES))
    dd.from_pandas(df, npartitions=6).to_parquet(str(d / "jets.parquet"), write_index=False)
    return d, jets, q


def test_local_cluster_parquet_equals_single_process(setup):
    from lightspeed.dask import predict_parquet

    d, jets, q = setup
    out = predict_parquet(d / "jets.parquet", d / "model", list(FEATURES), d / "pred.parquet",
                          outputs=[f"p_{c}" for c in jets.class_names], scheduler="local:2")  # fmt: skip
    got = pd.read_parquet(out).to_numpy()
    want = q.predict(jets.features)
    assert got.shape == want.shape
    assert np.array_equal(got, want)


def test_dask_array_and_onnx_runner(setup):
    import dask.array as da

    from lightspeed.dask import predict_array

    d, jets, q = setup
    x = da.from_array(jets.features, chunks=(700, 8))  # feature axis split on purpose
    got = predict_array(x, d / "model", batch_size=256).compute(scheduler="threads")
    assert np.array_equal(got, q.predict(jets.features))
    onnx = predict_array(x, model_path("jet_tagger")).compute(scheduler="threads")
    assert np.allclose(onnx, q.predict_float(jets.features), atol=1e-4)


def test_wrong_schema_fails_loudly(setup):
    from lightspeed.dask import predict_dataframe

    d, jets, _ = setup
    df = pd.DataFrame(jets.features[:100], columns=list(FEATURES)).drop(columns=[FEATURES[3]])
    ddf = dd.from_pandas(df, npartitions=2)
    with pytest.raises(InputError, match="lacks columns"):
        predict_dataframe(ddf.assign(**{FEATURES[3]: 0.0}).drop(columns=[FEATURES[3]]), d / "model",
                          list(FEATURES)).compute(scheduler="sync")  # fmt: skip


def test_unreachable_scheduler(setup):
    from lightspeed.dask import predict_parquet
    from lightspeed.errors import LightspeedError

    d, _, _ = setup
    with pytest.raises(LightspeedError, match=r"127\.0\.0\.1:1"):
        predict_parquet(d / "jets.parquet", d / "model", list(FEATURES), d / "x.parquet",
                        scheduler="tcp://127.0.0.1:1")  # fmt: skip
