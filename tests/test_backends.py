"""The model zoo under any Keras backend: every family builds, runs and takes
a training step; files saved under TensorFlow load and give TensorFlow's
outputs, and so do the shipped weights.

.ci/run runs this module under KERAS_BACKEND=tensorflow, jax and torch.
Under JAX and PyTorch the TensorFlow side runs in a subprocess: the Python
that KERAS_RESNET_TF_PYTHON names (.ci/run sets it to its TensorFlow
environment's) runs tensorflow_reference.py on this checkout.
"""

import os
import pathlib
import subprocess

import keras
import numpy as np
import pytest

import keras_resnet as kr
import tensorflow_reference
from applications_weights import predict
from conftest import FAMILIES

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Outputs of order 1 from one float32 net under two backends differ by rounding.
ATOL = 1e-5


@pytest.mark.parametrize("name", FAMILIES)
def test_family_builds_runs_and_takes_a_training_step(name, photo):
    size = 32 if kr.is_cifar_model(name) else 64
    model = kr.get_model(name, weights=None, input_shape=(size, size, 3), classes=3)
    x = np.stack([photo("chelsea", size), photo("rocket", size)]) / 255.0
    probabilities = model.predict(x, verbose=0)
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    before = [keras.ops.convert_to_numpy(w) for w in model.weights]
    loss = model.fit(x, np.array([0, 2]), batch_size=2, epochs=1, verbose=0).history["loss"]
    assert len(loss) == 1 and np.isfinite(loss[0])
    changed = {w.path for w, old in zip(model.weights, before)
               if not np.array_equal(keras.ops.convert_to_numpy(w), old)}
    # Every kernel, gamma and beta moved (a conv bias before BN has no
    # gradient), and BN's moving statistics were updated.
    learned = {w.path for w in model.trainable_weights if not w.path.endswith("bias")}
    assert learned <= changed
    assert any(path.endswith("moving_mean") for path in changed)


@pytest.fixture(scope="module")
def tensorflow_files(tmp_path_factory):
    """A folder of tensorflow_reference's files, written by TensorFlow."""
    folder = tmp_path_factory.mktemp("tensorflow")
    if keras.backend.backend() == "tensorflow":
        tensorflow_reference.write(folder)
        return folder
    python = os.environ.get("KERAS_RESNET_TF_PYTHON")
    if not python:
        pytest.fail(
            "KERAS_RESNET_TF_PYTHON must name the Python of an environment with "
            "TensorFlow installed (.ci/run sets it): the reference is TensorFlow's"
        )
    env = {**os.environ, "KERAS_BACKEND": "tensorflow",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([python, tensorflow_reference.__file__, str(folder)],
                   check=True, env=env, cwd=ROOT, timeout=600)
    return folder


@pytest.fixture(scope="module")
def reference(tensorflow_files):
    with np.load(tensorflow_files / tensorflow_reference.REFERENCE_FILE) as arrays:
        return dict(arrays)


@pytest.mark.parametrize("name", tensorflow_reference.MODELS)
def test_a_keras_file_saved_under_tensorflow_gives_its_outputs(name, tensorflow_files, reference):
    model = keras.models.load_model(tensorflow_files / f"{name}.keras")
    logits = predict(model, reference[f"{name}_x"])
    assert np.abs(logits).max() > 0.1 and logits.std() > 0.05  # a meaningful output
    np.testing.assert_allclose(logits, reference[f"{name}_logits"], rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", tensorflow_reference.MODELS)
def test_a_weights_file_saved_under_tensorflow_gives_its_outputs(name, tensorflow_files,
                                                                 reference):
    path = tensorflow_files / f"{name}.weights.h5"
    model = kr.get_model(name, weights=str(path), **tensorflow_reference.MODELS[name])
    np.testing.assert_allclose(predict(model, reference[f"{name}_x"]),
                               reference[f"{name}_logits"], rtol=0, atol=ATOL)


def test_the_shipped_cifar10_weights_give_tensorflows_outputs(reference):
    x = tensorflow_reference.cifar10_inputs()
    expected = reference["cifar10_probabilities"]
    np.testing.assert_allclose(predict(kr.ResNet20(weights="cifar10"), x), expected,
                               rtol=0, atol=ATOL)
    # A check that can fail: the same net with fresh weights does not.
    assert np.abs(predict(kr.ResNet20(), x) - expected).max() > 1e-2
