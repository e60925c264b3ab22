"""Property-based tests (hypothesis): random shapes, dtypes and values never crash other than
with the documented errors, finite inputs never give non-finite scores, scores do not depend on
the batch size, and calibration flags the fraction it was asked for."""

import string

import hypothesis.extra.numpy as hnp
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_deepad.data import load_csv
from keras_deepad.models import AE, OCNN, VAE, DeepSVDD

N_FEATURES = 5
PROPERTY_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays reproducible
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: One small trained detector per kind of score: reconstruction, likelihood, distance, margin.
FACTORIES = {
    "ae": lambda: AE(hidden_units=(8,), latent_dim=2, seed=0),
    "vae": lambda: VAE(hidden_units=(8,), latent_dim=2, seed=0),
    "deep-svdd": lambda: DeepSVDD(hidden_units=(8,), rep_dim=4, pretrain_epochs=1, seed=0),
    "ocnn": lambda: OCNN(hidden_units=16, seed=0),
}


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def detector(request):
    x = np.random.default_rng(0).normal(size=(256, N_FEATURES)).astype("float32")
    model = FACTORIES[request.param]()
    model.fit(x, epochs=2, batch_size=64, verbose=0)
    model.calibrate(x, contamination=0.1)
    return model


FLOAT_DTYPES = st.sampled_from([np.float16, np.float32, np.float64])
INT_DTYPES = st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint8])


@st.composite
def finite_inputs(draw, n_features=N_FEATURES):
    """Finite arrays of any numeric dtype, values up to the float32 range."""
    n = draw(st.integers(1, 40))
    if draw(st.booleans()):
        dtype = draw(FLOAT_DTYPES)
        limit, width = {
            np.float16: (6e4, 16),
            np.float32: (float(np.finfo(np.float32).max), 32),
            np.float64: (1e30, 64),
        }[dtype]
        elements = st.floats(-limit, limit, allow_nan=False, allow_infinity=False, width=width)
    else:
        dtype = draw(INT_DTYPES)
        elements = None
    return draw(hnp.arrays(dtype, (n, n_features), elements=elements))


@PROPERTY_SETTINGS
@given(x=finite_inputs(), batch_size=st.integers(1, 64))
def test_finite_inputs_give_finite_scores_whatever_the_batch_size(detector, x, batch_size):
    scores = detector.score(x)
    assert scores.shape == (len(x),) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    batched = detector.score(x, batch_size=batch_size)
    # Equal to float32 precision where it holds: rows of moderate values (for rows of
    # 1e4 a matmul's summation order already moves OC-NN's cos(Vx + b) by 1e-5).
    moderate = (np.abs(x.astype(np.float64)) <= 100).all(axis=1)
    atol = 1e-5 * max(1.0, float(np.abs(scores[moderate]).max(initial=0.0)))
    np.testing.assert_allclose(batched[moderate], scores[moderate], rtol=1e-4, atol=atol)
    labels = detector.is_anomaly(x)
    assert labels.shape == (len(x),) and set(np.unique(labels)) <= {0, 1}
    np.testing.assert_array_equal(labels, (scores > detector.threshold).astype(labels.dtype))


@PROPERTY_SETTINGS
@given(
    x=hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 80), st.just(N_FEATURES)),
        elements=st.floats(-100, 100, width=32),
    ),
    batch_size=st.integers(1, 64),
)
def test_scores_do_not_depend_on_the_batch_size(detector, x, batch_size):
    scores = detector.score(x)
    atol = 1e-5 * max(1.0, float(np.abs(scores).max()))
    np.testing.assert_allclose(
        detector.score(x, batch_size=batch_size), scores, rtol=1e-4, atol=atol
    )
    for start in range(0, len(x), 7):  # a row scores the same alone or among others
        np.testing.assert_allclose(
            detector.score(x[start : start + 1]), scores[start : start + 1], rtol=1e-4, atol=atol
        )


@PROPERTY_SETTINGS
@given(
    n=st.integers(1, 30),
    features=st.integers(1, 9).filter(lambda f: f != N_FEATURES),
    extra_axis=st.booleans(),
)
def test_a_wrong_shape_is_a_value_error_naming_it(detector, n, features, extra_axis):
    shape = (n, features, 2) if extra_axis else (n, features)
    with pytest.raises(ValueError, match="features|rank|shape"):
        detector.score(np.zeros(shape, np.float32))


@PROPERTY_SETTINGS
@given(
    x=hnp.arrays(np.float64, st.tuples(st.integers(1, 30), st.just(N_FEATURES))),
    data=st.data(),
)
def test_a_non_finite_value_is_a_value_error_naming_the_sample(detector, x, data):
    x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    row = data.draw(st.integers(0, len(x) - 1))
    column = data.draw(st.integers(0, N_FEATURES - 1))
    x[row, column] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    with pytest.raises(ValueError, match=rf"NaN|infinite.*sample {row}"):
        detector.score(x)


@PROPERTY_SETTINGS
@given(
    value=st.one_of(
        st.text(max_size=5),
        st.lists(
            st.text(string.ascii_letters, min_size=1), min_size=N_FEATURES, max_size=N_FEATURES
        ),
        st.just(np.zeros((0, N_FEATURES))),
        st.just(np.array([["a"] * N_FEATURES])),
        st.just(np.array([[1 + 2j] * N_FEATURES])),
    )
)
def test_non_numeric_or_empty_input_is_a_value_error(detector, value):
    with pytest.raises((ValueError, TypeError)):
        detector.score(value)


@PROPERTY_SETTINGS
@given(
    scores_x=hnp.arrays(
        np.float32,
        st.tuples(st.integers(20, 200), st.just(N_FEATURES)),
        elements=st.floats(-100, 100, width=32),
    ),
    contamination=st.floats(0.01, 0.5),
)
def test_calibration_flags_at_most_the_contamination(detector, scores_x, contamination):
    threshold = detector.calibrate(scores_x, contamination=contamination)
    assert np.isfinite(threshold) and detector.threshold == pytest.approx(threshold)
    flagged = detector.is_anomaly(scores_x).mean()
    # Ties (repeated rows) can only lower the flagged fraction below the quantile's.
    assert flagged <= contamination + 1.0 / len(scores_x) + 1e-9


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    table=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 20), st.integers(1, 6)),
        elements=st.floats(-1e6, 1e6, allow_nan=False, width=32),
    )
)
def test_csv_round_trip(tmp_path_factory, table):
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    pd.DataFrame(table, columns=[f"f{i}" for i in range(table.shape[1])]).to_csv(path, index=False)
    x, y = load_csv(path)
    assert y is None and x.dtype == np.float32
    np.testing.assert_allclose(x, table.astype(np.float32), rtol=1e-6)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(text=st.text(alphabet=string.printable, max_size=200))
def test_csv_of_any_text_loads_or_is_a_clear_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    path.write_text(text)
    try:
        x, _ = load_csv(path)
    except ValueError as err:
        assert str(err)
    else:
        assert x.dtype == np.float32 and x.ndim == 2 and np.isfinite(x).all()
