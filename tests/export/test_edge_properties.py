"""Property-based tests of `EdgeDetector` (hypothesis): any input either scores finite values
equal to Keras' or is refused with a `ValueError`."""

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_deepad.edge import EdgeDetector

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
N_FEATURES = 16  # the blobs data of the export zoo


@pytest.fixture(scope="module", params=["float32", "int8"])
def edge(request, zoo):
    exported = zoo["ae"]
    return exported, EdgeDetector(exported.tflite[request.param].path), request.param


@SETTINGS
@given(
    x=hnp.arrays(
        st.sampled_from([np.float32, np.float64, np.int32, np.int8]),
        st.tuples(st.integers(1, 40), st.just(N_FEATURES)),
        elements=st.integers(-20, 20),
    )
)
def test_edge_scores_are_finite_and_follow_keras(edge, x):
    exported, detector, quantization = edge
    scores = detector.score(x)
    assert scores.shape == (len(x),) and np.isfinite(scores).all()
    if quantization == "float32":
        keras_scores = exported.model.score(x)
        np.testing.assert_allclose(scores, keras_scores, rtol=1e-4, atol=1e-5)
    labels = detector.predict_labels(x)
    assert set(np.unique(labels)) <= {0, 1}


@SETTINGS
@given(
    shape=st.one_of(
        st.tuples(st.integers(1, 5), st.integers(1, 30).filter(lambda f: f != N_FEATURES)),
        st.tuples(st.integers(1, 5), st.just(N_FEATURES), st.integers(1, 3)),
        st.tuples(st.just(0), st.just(N_FEATURES)),
    ),
    bad=st.sampled_from([None, np.nan, np.inf, -np.inf]),
)
def test_edge_refuses_bad_input_with_a_value_error(edge, shape, bad):
    _, detector, _ = edge
    x = np.zeros(shape, np.float32)
    if bad is not None and x.size:
        x.flat[x.size // 2] = bad
    elif bad is None and len(shape) == 2 and shape[1] == N_FEATURES and shape[0]:
        return  # a valid input: the other test covers it
    with pytest.raises(ValueError):
        detector.score(x)
