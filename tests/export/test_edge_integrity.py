"""The TFLite metadata is sealed to its model, and malformed metadata is refused by name.

Every case edits a copy of one exported file pair (the WAE's int8 export, scored by the
reconstruction error, whose metadata has every kind of field: host normalisation, quantised
input and output, a host scoring recipe) and requires a `ValueError` that names the metadata
file and the field; the fields of the autoencoders' "hybrid" recipe are checked on the AE's.
"""

import copy
import hashlib
import json
import math
import shutil

import numpy as np
import pytest
from scipy.stats import spearmanr

from keras_deepad.edge import (
    INTEGRITY_FIELD,
    EdgeDetector,
    check_metadata,
    integrity_digest,
    seal_metadata,
)

SOURCE = ("wae", "int8")


@pytest.fixture
def pair(zoo, tmp_path):
    """A copy of an exported `.tflite` and its metadata: (model path, metadata path, metadata)."""
    return _copy(zoo, tmp_path, SOURCE)


@pytest.fixture
def hybrid_pair(zoo, tmp_path):
    """The same for the AAE's int8 export, scored by the "hybrid" recipe."""
    pair = _copy(zoo, tmp_path, ("aae", "int8"))
    assert pair[2]["scoring"]["kind"] == "hybrid"
    return pair


@pytest.fixture
def knn_hybrid_pair(zoo, tmp_path):
    """The same for the AE's int8 export, scored by the "hybrid_knn" recipe."""
    pair = _copy(zoo, tmp_path, ("ae", "int8"))
    assert pair[2]["scoring"]["kind"] == "hybrid_knn"
    return pair


def _copy(zoo, tmp_path, source):
    artifact = zoo[source[0]].tflite[source[1]]
    model = tmp_path / "m.tflite"
    shutil.copyfile(artifact.path, model)
    meta_file = tmp_path / "m.tflite.json"
    shutil.copyfile(artifact.metadata_path, meta_file)
    return model, meta_file, json.loads(meta_file.read_text())


def _refused(model, meta_file, field, verify=True, match=None):
    with pytest.raises(ValueError, match=match) as info:
        EdgeDetector(model, verify=verify)
    message = str(info.value)
    assert str(meta_file) in message, message
    if field is not None:
        assert f"field {field!r}" in message, message
    return message


def _set(meta, dotted, value):
    *parents, key = dotted.split(".")
    for name in parents:
        meta = meta[name]
    meta[key] = value


def _remove(meta, dotted):
    *parents, key = dotted.split(".")
    for name in parents:
        meta = meta[name]
    del meta[key]


def test_an_untampered_export_is_sealed_and_scores_as_before(zoo, pair):
    model, meta_file, meta = pair
    artifact = zoo[SOURCE[0]].tflite[SOURCE[1]]
    assert meta == artifact.metadata
    assert meta[INTEGRITY_FIELD] == {
        "algorithm": "sha256",
        "digest": integrity_digest(model.read_bytes(), meta),
    }
    assert check_metadata(meta, str(meta_file)) is meta
    x = zoo[SOURCE[0]].x[:64]
    verified = EdgeDetector(model)
    unchecked = EdgeDetector(model, verify=False)
    np.testing.assert_array_equal(verified.score(x), unchecked.score(x))
    np.testing.assert_array_equal(verified.score(x), EdgeDetector(artifact.path).score(x))
    assert verified.threshold == meta["threshold"]
    # The metadata may also be given as a path or as the parsed dict.
    np.testing.assert_array_equal(
        EdgeDetector(model, metadata=str(meta_file)).score(x[:5]), verified.score(x[:5])
    )
    np.testing.assert_array_equal(
        EdgeDetector(model, metadata=meta).score(x[:5]), verified.score(x[:5])
    )
    # A float32 export still scores as Keras does.
    e = zoo[SOURCE[0]]
    float32 = EdgeDetector(e.tflite["float32"].path)
    np.testing.assert_allclose(float32.score(e.x), e.scores, rtol=1e-5, atol=e.atol(1e-5))


#: name -> (edit of the parsed metadata, field the error names). Each leaves a well-formed
#: metadata file that a detector would otherwise load and use.
TAMPERED = {
    "threshold": (lambda m: _set(m, "threshold", m["threshold"] * 2), "integrity"),
    "threshold_zero": (lambda m: _set(m, "threshold", 0.0), "integrity"),
    "float_threshold": (lambda m: _set(m, "float_threshold", 1.0), "integrity"),
    "normalization_offset": (
        lambda m: _set(m, "normalization.offset", [v + 0.1 for v in m["normalization"]["offset"]]),
        "integrity",
    ),
    "normalization_scale": (
        lambda m: _set(m, "normalization.scale", [2 * v for v in m["normalization"]["scale"]]),
        "integrity",
    ),
    "normalization_applied": (lambda m: _set(m, "normalization.applied", "graph"), "integrity"),
    "scoring_error": (lambda m: _set(m, "scoring.error", "max"), "integrity"),
    "output_quantization": (
        lambda m: _set(m, "outputs.reconstruction.quantization.scale", 1.0),
        "integrity",
    ),
    "score_quantiles": (
        lambda m: _set(m, "representative_score_quantiles", {"0.5": 0.0}),
        "integrity",
    ),
    "extra_field": (lambda m: _set(m, "note", "harmless?"), "integrity"),
    "integrity_digest": (lambda m: _set(m, "integrity.digest", "0" * 64), "integrity"),
    "integrity_digest_null": (lambda m: _set(m, "integrity.digest", None), "integrity.digest"),
    "integrity_digest_missing": (lambda m: _remove(m, "integrity.digest"), "integrity.digest"),
    "integrity_algorithm": (lambda m: _set(m, "integrity.algorithm", "md5"), "integrity.algorithm"),
    "integrity_not_object": (lambda m: _set(m, "integrity", "0" * 64), "integrity"),
    "integrity_missing": (lambda m: _remove(m, "integrity"), "integrity"),
    "integrity_null": (lambda m: _set(m, "integrity", None), "integrity"),
    "sha256_missing": (lambda m: _remove(m, "sha256"), "sha256"),
    "sha256_null": (lambda m: _set(m, "sha256", None), "sha256"),
    "sha256_wrong": (lambda m: _set(m, "sha256", "f" * 64), "sha256"),
    "sha256_not_string": (lambda m: _set(m, "sha256", 12), "sha256"),
    "hashes_both_missing": (lambda m: [m.pop("sha256"), m.pop("integrity")], "sha256"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_metadata_is_refused(pair, case):
    model, meta_file, meta = pair
    edit, field = TAMPERED[case]
    edit(meta)
    meta_file.write_text(json.dumps(meta, indent=2))
    message = _refused(model, meta_file, field)
    if case.endswith(("_missing", "_null")) and field in ("sha256", "integrity"):
        assert "verify=False" in message and "re-export" in message, message


def test_tampered_model_bytes_are_refused(zoo, pair):
    model, meta_file, meta = pair
    content = bytearray(model.read_bytes())
    content[len(content) // 2] ^= 0xFF
    model.write_bytes(bytes(content))
    message = _refused(model, meta_file, "sha256")
    assert str(model) in message
    # Also when the metadata's own SHA-256 of the file is updated to match the new bytes.
    meta["sha256"] = hashlib.sha256(bytes(content)).hexdigest()
    meta_file.write_text(json.dumps(meta))
    _refused(model, meta_file, "integrity")
    # The metadata of another export of the same model.
    other = zoo[SOURCE[0]].tflite["dynamic-int8"].metadata_path
    shutil.copyfile(zoo[SOURCE[0]].tflite[SOURCE[1]].path, model)
    shutil.copyfile(other, meta_file)
    _refused(model, meta_file, "sha256", match="different exports")


def test_a_tampered_dict_is_refused_and_verify_false_opts_out(zoo, pair):
    model, meta_file, meta = pair
    with pytest.raises(ValueError, match=r"the metadata given for .*m\.tflite: field 'integrity'"):
        EdgeDetector(model, metadata={**meta, "threshold": 0.0})
    # verify=False: the edited threshold is used, the scores are the file's.
    x = zoo[SOURCE[0]].x[:64]
    before = EdgeDetector(model).score(x)
    meta_file.write_text(json.dumps({**meta, "threshold": 0.0}))
    detector = EdgeDetector(model, verify=False)
    assert detector.threshold == 0.0
    np.testing.assert_array_equal(detector.score(x), before)
    np.testing.assert_array_equal(detector.predict_labels(x), (before > 0.0).astype(np.int64))
    # A sealed dict built in memory loads with verification.
    sealed = seal_metadata(model.read_bytes(), {**meta, "threshold": 0.0})
    assert EdgeDetector(model, metadata=sealed).threshold == 0.0


def test_metadata_without_the_integrity_field_reads_only_unverified(pair):
    """Metadata written before the `integrity` field: refused by default, read with verify=False."""
    model, meta_file, meta = pair
    del meta[INTEGRITY_FIELD]
    meta_file.write_text(json.dumps(meta))
    message = _refused(model, meta_file, "integrity", match="is missing")
    assert "re-export" in message and "verify=False" in message
    assert EdgeDetector(model, verify=False).threshold == meta["threshold"]


#: name -> the metadata file's text (from the exported text); the error names the file only.
NOT_METADATA = {
    "truncated": lambda text: text[: len(text) // 2],
    "truncated_to_one_byte": lambda text: text[:1],
    "empty": lambda text: "",
    "trailing_garbage": lambda text: text + "}",
    "list": lambda text: "[" + text + "]",
    "string": lambda text: json.dumps("keras_deepad.tflite"),
    "number": lambda text: "1",
    "null": lambda text: "null",
}


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("case", sorted(NOT_METADATA))
def test_metadata_that_is_not_a_json_object_is_refused(pair, case, verify):
    model, meta_file, _ = pair
    meta_file.write_text(NOT_METADATA[case](meta_file.read_text()))
    message = _refused(model, meta_file, None, verify=verify)
    assert "not valid JSON" in message or "must be a JSON object" in message, message


def test_binary_metadata_is_refused(pair):
    model, meta_file, _ = pair
    meta_file.write_bytes(b"\xff\xfe\x00garbage")
    _refused(model, meta_file, None, match="not UTF-8")


#: Every field EdgeDetector reads from the int8 metadata: removing any of them is refused.
REQUIRED = [
    "format",
    "format_version",
    "feature_shape",
    "quantization",
    "signature",
    "threshold",
    "normalization",
    "normalization.applied",
    "normalization.offset",
    "normalization.scale",
    "input",
    "input.name",
    "input.quantization.scale",
    "input.quantization.zero_point",
    "input.quantization.dtype",
    "outputs",
    "outputs.reconstruction.quantization.scale",
    "outputs.reconstruction.quantization.zero_point",
    "outputs.reconstruction.quantization.dtype",
    "scoring",
    "scoring.kind",
    "scoring.output",
    "scoring.error",
]


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("field", REQUIRED)
def test_each_missing_field_is_refused(pair, field, verify):
    model, meta_file, meta = pair
    _remove(meta, field)
    meta_file.write_text(json.dumps(meta))
    _refused(model, meta_file, field, verify=verify, match="is missing")


#: name -> (field, bad value): wrong types and values, each refused naming the field.
WRONG = {
    "threshold_string": ("threshold", "0.5"),
    "threshold_list": ("threshold", [0.5]),
    "threshold_bool": ("threshold", True),
    "threshold_nan": ("threshold", math.nan),
    "threshold_inf": ("threshold", math.inf),
    "threshold_object": ("threshold", {"value": 0.5}),
    "format_other": ("format", "onnx"),
    "format_version_string": ("format_version", "1"),
    "format_version_zero": ("format_version", 0),
    "format_version_newer": ("format_version", 99),
    "feature_shape_string": ("feature_shape", "16"),
    "feature_shape_float": ("feature_shape", [16.0]),
    "feature_shape_zero": ("feature_shape", [0]),
    "feature_shape_empty": ("feature_shape", []),
    "feature_shape_other": ("feature_shape", [3]),  # the normalisation no longer fits
    "quantization_null": ("quantization", None),
    "signature_number": ("signature", 1),
    "normalization_list": ("normalization", [0.0, 1.0]),
    "normalization_applied": ("normalization.applied", "device"),
    "offset_string": ("normalization.offset", "0"),
    "offset_string_item": ("normalization.offset", ["0.1"] * 16),
    "offset_nan_item": ("normalization.offset", [math.nan] * 16),
    "offset_null_item": ("normalization.offset", [None] * 16),
    "offset_short": ("normalization.offset", [0.0] * 3),
    "offset_ragged": ("normalization.offset", [[0.0], [0.0, 1.0]]),
    "scale_object": ("normalization.scale", {"0": 1.0}),
    "scale_inf": ("normalization.scale", math.inf),
    "input_string": ("input", "x_normalized"),
    "input_name_empty": ("input.name", ""),
    "input_quantization_list": ("input.quantization", [0.1, 0]),
    "input_scale_zero": ("input.quantization.scale", 0.0),
    "input_scale_string": ("input.quantization.scale", "0.1"),
    "input_zero_point_float": ("input.quantization.zero_point", 0.5),
    "input_dtype_float": ("input.quantization.dtype", "float32"),
    "input_dtype_unknown": ("input.quantization.dtype", "int7"),
    "outputs_list": ("outputs", ["reconstruction"]),
    "outputs_empty": ("outputs", {}),
    "output_spec_string": ("outputs.reconstruction", "int8"),
    "scoring_list": ("scoring", ["reconstruction_error"]),
    "scoring_kind_unknown": ("scoring.kind", "telepathy"),
    "scoring_kind_number": ("scoring.kind", 3),
    "scoring_output_unknown": ("scoring.output", "score"),
    "scoring_error_unknown": ("scoring.error", "rmse"),
    "quantiles_list": ("training_score_quantiles", [0.1, 0.5]),
    "quantile_string": ("representative_score_quantiles.0.5", "high"),
    "class_name_number": ("class_name", 7),
}


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("case", sorted(WRONG))
def test_each_malformed_field_is_refused(pair, case, verify):
    model, meta_file, meta = pair
    field, value = WRONG[case]
    if field.startswith("representative_score_quantiles."):
        meta["representative_score_quantiles"]["0.5"] = value
    else:
        _set(meta, field, value)
    meta_file.write_text(json.dumps(meta))  # NaN and inf as JSON's NaN / Infinity
    named = "normalization.offset" if case == "feature_shape_other" else field
    message = _refused(model, meta_file, named, verify=verify)
    if case == "format_version_newer":
        assert "upgrade keras_deepad" in message
    if case == "scoring_kind_unknown":
        assert "newer keras_deepad.edge" in message


#: Recipes of the other scoring kinds (not in the int8 AE file): field -> bad value.
RECIPES = {
    "center_distance": (
        {"kind": "center_distance", "output": "reconstruction", "center": [0.0] * 16},
        [("center", "0"), ("center", [math.nan]), ("radius_squared", None), ("output", None)],
        ["center", "radius_squared"],
    ),
    "linear_margin": (
        {"kind": "linear_margin", "output": "reconstruction", "weights": [1.0], "offset": 0.0},
        [("weights", ["1"]), ("offset", "0"), ("offset", math.inf)],
        ["weights", "offset", "output"],
    ),
    "cosine_margin": (
        {
            "kind": "cosine_margin",
            "output": "reconstruction",
            "weights": [1.0],
            "offset": 0.0,
            "scale": 1.0,
        },
        [("scale", [1.0]), ("scale", True)],
        ["scale"],
    ),
    "neighbours": (
        {
            "kind": "neighbours",
            "output": "reconstruction",
            "origin": [0.0, 0.0],
            "bank": [0.0, 1.0, 1.0, 0.0, 1.0, 1.0],
            "k": 2,
            "tolerance": 1e-6,
        },
        [("bank", [0.0] * 5), ("k", 3), ("k", 1.5), ("origin", "0"), ("tolerance", None)],
        ["origin", "bank", "k", "tolerance", "output"],
    ),
    "vae_monte_carlo": (
        {
            "kind": "vae_monte_carlo",
            "likelihood": "gaussian",
            "include_kl": True,
            "outputs": {"decoded": "reconstruction", "mu": "reconstruction", "logvar": "nope"},
            "decoder_logvar": [0.0] * 16,
        },
        [("likelihood", "poisson"), ("include_kl", "yes"), ("outputs", ["decoded"])],
        ["likelihood", "outputs", "decoder_logvar"],
    ),
}


@pytest.mark.parametrize("kind", sorted(RECIPES))
def test_scoring_recipe_fields_are_checked(pair, kind):
    """Each recipe's constants: wrong types and missing fields, named (checked before hashes)."""
    model, meta_file, meta = pair
    recipe, wrong, required = RECIPES[kind]
    where = str(meta_file)
    base = {**meta, "scoring": recipe}
    if kind == "vae_monte_carlo":
        # The recipe above names an output that does not exist: that is refused too.
        with pytest.raises(ValueError, match=r"field 'scoring\.outputs\.logvar' names 'nope'"):
            check_metadata(base, where)
        recipe = {**recipe, "outputs": {k: "reconstruction" for k in recipe["outputs"]}}
        base = {**meta, "scoring": recipe}
    elif kind == "center_distance":
        recipe = {**recipe, "radius_squared": 0.0}
        base = {**meta, "scoring": recipe}
    check_metadata(copy.deepcopy(base), where)
    for key, value in wrong:
        bad = copy.deepcopy(base)
        bad["scoring"][key] = value
        with pytest.raises(ValueError) as info:
            check_metadata(bad, where)
        assert where in str(info.value) and f"field 'scoring.{key}'" in str(info.value)
    for key in required:
        bad = copy.deepcopy(base)
        del bad["scoring"][key]
        with pytest.raises(ValueError, match=rf"field 'scoring\.{key}' is missing"):
            check_metadata(bad, where)


#: The hybrid recipe's fields: (field, bad value or None to remove it).
HYBRID_WRONG = {
    "code_output_missing": ("scoring.code_output", None),
    "code_output_unknown": ("scoring.code_output", "codes"),
    "mean_missing": ("scoring.mean", None),
    "mean_nan": ("scoring.mean", [math.nan, 0.0, 0.0]),
    "precision_missing": ("scoring.precision", None),
    "precision_short": ("scoring.precision", [1.0] * 8),
    "precision_string": ("scoring.precision", "identity"),
    "log_stats_missing": ("scoring.log_stats", None),
    "log_stats_short": ("scoring.log_stats", [0.0, 1.0, 0.0]),
    "error_weights_short": ("scoring.error_weights", [1.0]),
    "error_weights_string": ("scoring.error_weights", "ones"),
}


#: The hybrid_knn recipe's fields: (field, bad value or None to remove it).
HYBRID_KNN_WRONG = {
    "code_output_missing": ("scoring.code_output", None),
    "code_output_unknown": ("scoring.code_output", "codes"),
    "error_weights_missing": ("scoring.error_weights", None),
    "error_weights_short": ("scoring.error_weights", [1.0]),
    "error_log_stats_short": ("scoring.error_log_stats", [0.0]),
    "distance_log_stats_missing": ("scoring.distance_log_stats", None),
    "distance_log_stats_nan": ("scoring.distance_log_stats", [math.nan, 1.0]),
    "origin_missing": ("scoring.origin", None),
    "bank_not_whole_codes": ("scoring.bank", [0.0] * 5),
    "bank_string": ("scoring.bank", "codes"),
    "k_zero": ("scoring.k", 0),
    "k_beyond_the_bank": ("scoring.k", 10**6),
    "tolerance_string": ("scoring.tolerance", "small"),
}


def test_a_hybrid_file_without_error_weights_scores_the_plain_error(zoo, hybrid_pair):
    """Files written before the per-feature weights: the mean squared error, as then."""
    model, meta_file, meta = hybrid_pair
    x = zoo.data.x_test
    weighted = EdgeDetector(model, verify=False).score(x)
    _remove(meta, "scoring.error_weights")
    meta_file.write_text(json.dumps(meta))
    plain = EdgeDetector(model, verify=False).score(x)
    assert np.isfinite(plain).all()
    assert not np.allclose(plain, weighted)


@pytest.mark.parametrize(
    ("recipe", "case"),
    [("hybrid", case) for case in sorted(HYBRID_WRONG)]
    + [("hybrid_knn", case) for case in sorted(HYBRID_KNN_WRONG)],
)
def test_each_malformed_hybrid_field_is_refused(request, recipe, case):
    pair, wrong = {
        "hybrid": ("hybrid_pair", HYBRID_WRONG),
        "hybrid_knn": ("knn_hybrid_pair", HYBRID_KNN_WRONG),
    }[recipe]
    model, meta_file, meta = request.getfixturevalue(pair)
    field, value = wrong[case]
    if value is None:
        _remove(meta, field)
    else:
        _set(meta, field, value)
    meta_file.write_text(json.dumps(meta))
    _refused(model, meta_file, field, verify=False)


def test_the_hybrid_knn_recipe_scores_as_the_model(zoo, knn_hybrid_pair):
    """The metadata's bank and statistics give the model's score (the float32 host file)."""
    e = zoo["ae"]
    x = zoo.data.x_test
    host = EdgeDetector(e.tflite["float32-host"].path).score(x)
    np.testing.assert_allclose(host, e.scores, rtol=1e-5, atol=e.atol(1e-5))
    model, _, meta = knn_hybrid_pair
    assert len(meta["scoring"]["bank"]) == e.model.code_neighbours.rows * 4
    assert spearmanr(EdgeDetector(model, verify=False).score(x), e.scores)[0] > 0.9
