"""Weights: keras.applications' files reproduce its outputs; every file or
name that cannot fit fails with a ValueError that says why.

The files are keras.applications' own models, randomized and saved by
applications_weights; test_applications loads ResNet-101/152's.
"""

import json

import keras
import numpy as np
import pytest
from keras.src.applications import imagenet_utils as keras_imagenet_utils

import keras_resnet as kr
from applications_weights import predict, reference
from keras_resnet import weights as weights_lib


@pytest.fixture(scope="module")
def resnet50_files(tmp_path_factory, photo):
    return reference(50, True, 224, tmp_path_factory.mktemp("resnet50"), photo)


@pytest.mark.parametrize("fmt", ["weights.h5", "legacy h5"])
def test_resnet50_reproduces_keras_applications(resnet50_files, fmt):
    files, kwargs, x, expected = resnet50_files
    assert np.abs(expected).max() > 0.1 and expected.std() > 0.05  # a meaningful output
    model = kr.ResNet50(weights=files[fmt], **kwargs)
    np.testing.assert_allclose(predict(model, x), expected, rtol=0, atol=1e-5)


def test_the_equivalence_check_can_fail(resnet50_files):
    """The same file in v1.5 (same weight shapes, stride in the 3x3) and no
    file at all both give clearly different outputs."""
    files, kwargs, x, expected = resnet50_files
    v15 = kr.ResNet50(weights=files["weights.h5"], variant="v1.5", **kwargs)
    assert np.abs(predict(v15, x) - expected).max() > 1e-2
    assert np.abs(predict(kr.ResNet50(**kwargs), x) - expected).max() > 1e-2


def test_keras_applications_notop_file(tmp_path, photo):
    """The legacy `_notop` layout, which keras.applications publishes (the
    loader of `.weights.h5` is the same for every depth: ResNet-50 tests it)."""
    files, kwargs, x, expected = reference(50, False, 224, tmp_path, photo)
    model = kr.ResNet50(weights=files["legacy h5"], **kwargs)
    np.testing.assert_allclose(predict(model, x), expected, rtol=0, atol=1e-5)


def test_weights_imagenet_downloads_keras_applications_file(resnet50_files, monkeypatch):
    """weights="imagenet" asks keras.utils.get_file for keras.applications'
    file (faked here: the machine is offline) and loads what it returns."""
    files, kwargs, x, expected = resnet50_files
    asked = []

    def fake_get_file(fname, origin, **kwargs):
        asked.append((fname, origin, kwargs.get("file_hash")))
        return files["legacy h5"]

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    model = kr.ResNet50(weights="imagenet", **kwargs)
    np.testing.assert_allclose(predict(model, x), expected, rtol=0, atol=1e-5)
    fname = "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    assert asked == [(fname, weights_lib.KERAS_APPLICATIONS_URL + fname,
                      weights_lib.IMAGENET_HASHES["resnet50"][0])]


@pytest.mark.parametrize("include_top, fname", [
    (True, "resnet50_weights_tf_dim_ordering_tf_kernels.h5"),
    (False, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
])
def test_weights_imagenet_offline_says_what_to_do(monkeypatch, include_top, fname):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(ValueError) as error:
        kr.ResNet50(weights="imagenet", include_top=include_top, input_shape=(64, 64, 3))
    message = str(error.value)
    assert weights_lib.KERAS_APPLICATIONS_URL + fname in message
    assert "weights='<path>'" in message and "~/.keras/models/" + fname in message


MISMATCH = "ignore:Skipping nested container"  # Keras warns, then fails to load


@pytest.mark.filterwarnings(MISMATCH)
@pytest.mark.parametrize("fmt", ["weights.h5", "legacy h5"])
@pytest.mark.parametrize("other", [{"depth": 101}, {"depth": 50, "variant": "d"}])
def test_a_file_for_another_architecture_is_rejected(resnet50_files, fmt, other):
    files = resnet50_files[0]
    with pytest.raises(ValueError) as error:
        kr.imagenet_resnet(weights=files[fmt], input_shape=(64, 64, 3), **other)
    assert f"does not fit model 'resnet{other['depth']}'" in str(error.value)
    assert files[fmt] in str(error.value)


@pytest.mark.filterwarnings(MISMATCH)
@pytest.mark.parametrize("fmt", ["weights.h5", "legacy h5"])
def test_a_file_with_other_classes_is_rejected(resnet50_files, fmt):
    files = resnet50_files[0]
    with pytest.raises(ValueError, match="does not fit model 'resnet50'"):
        kr.ResNet50(weights=files[fmt], classes=10, input_shape=(64, 64, 3))


@pytest.mark.parametrize("build, words", [
    (lambda: kr.ResNet50(weights="imagenet", classes=10),
     ["classes=10", "weights='imagenet'", "classes=1000"]),
    (lambda: kr.ResNet18(weights="imagenet"),
     ["weights='imagenet'", "resnet18", "resnet101, resnet152, resnet50", "weights=None"]),
    (lambda: kr.ResNet50(weights="imagenet", variant="v1.5"), ["variant='v1.5'", "'v1'"]),
    (lambda: kr.ResNet50(weights="imagenet", shortcut="C"), ["shortcut='C'", "'B'"]),
    (lambda: kr.ResNet50(weights="imagenet", include_top=False, input_shape=(64, 64, 1)),
     ["channels=1", "channels=3"]),
    (lambda: kr.ResNet1202(weights="cifar10"), ["weights='cifar10'", "resnet1202", "resnet20",
                                                 "keras_resnet.trainers.train"]),
    (lambda: kr.ResNet20(weights="/no/such/file.weights.h5"),
     ["weights='/no/such/file.weights.h5'", "None", "imagenet, cifar10", "existing weights file"]),
])
def test_bad_weights_name_the_argument_and_what_is_allowed(build, words):
    with pytest.raises(ValueError) as error:
        build()
    for word in words:
        assert word in str(error.value)


def test_a_weights_file_of_unknown_format_is_rejected(tmp_path):
    path = tmp_path / "weights.npz"
    path.write_bytes(b"not weights")
    with pytest.raises(ValueError) as error:
        kr.ResNet20(weights=str(path))
    assert f"weights={str(path)!r}" in str(error.value)
    assert ".weights.h5, .h5, .keras" in str(error.value)


# --- decode_predictions ------------------------------------------------------


def test_decode_predictions_is_keras_applications(tmp_path, monkeypatch):
    # A stand-in class index: the real one is a download away.
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    path = tmp_path / "imagenet_class_index.json"
    path.write_text(json.dumps(index))
    monkeypatch.setattr(keras_imagenet_utils, "CLASS_INDEX", None)
    monkeypatch.setattr(keras_imagenet_utils.file_utils, "get_file", lambda *a, **k: str(path))
    preds = np.random.default_rng(0).dirichlet(np.ones(1000), size=2).astype("float32")
    decoded = kr.decode_predictions(preds, top=3)
    assert decoded == keras.applications.resnet.decode_predictions(preds, top=3)
    assert decoded[0][0][:2] == tuple(index[str(preds[0].argmax())])
    with pytest.raises(ValueError, match="1000"):
        kr.decode_predictions(preds[:, :10])


def test_decode_predictions_offline_says_what_to_do(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure")

    monkeypatch.setattr(keras_imagenet_utils, "CLASS_INDEX", None)
    monkeypatch.setattr(keras_imagenet_utils.file_utils, "get_file", offline)
    with pytest.raises(ValueError, match="~/.keras/models/imagenet_class_index.json"):
        kr.decode_predictions(np.ones((1, 1000), "float32"))
