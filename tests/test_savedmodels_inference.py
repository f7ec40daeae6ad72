"""--optimize_for_inference: exports whose graph has BN folded (and bfloat16
weights) answer real CIFAR-10 images as the Keras model does."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from data_fixtures import cifar_arrays, cifar_tree  # noqa: F401

import keras_resnet
from keras_resnet import cifar_utils
from keras_resnet import model_dir as model_dir_lib
from keras_resnet.preprocessing import EvalPreprocessing
from keras_resnet.savedmodels import export, sources

TOLERANCE = 1e-4


def run_export(*args):
    flag_values = flags.FlagValues()
    export.define_flags(flag_values)
    flag_values(["keras-resnet-export", *args])
    return export.export_from_flags(flag_values)


@pytest.fixture(scope="module")
def model_dir(cifar_arrays, tmp_path_factory):  # noqa: F811
    """A trainer-style model_dir of a ResNet-20 fitted briefly on real CIFAR-10
    images (BN statistics of real activations)."""
    keras.utils.set_random_seed(0)
    images, labels = cifar_arrays["train"]
    preprocessing = EvalPreprocessing("cifar", 32, images.astype("float32").mean(axis=0))
    model = keras_resnet.ResNet20(bn_momentum=0.0)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    model.fit(tf.stack([preprocessing(i) for i in images]), labels, batch_size=50, epochs=1,
              verbose=0)
    folder = str(tmp_path_factory.mktemp("runs") / "resnet20_cifar")
    os.makedirs(folder)
    model.save(os.path.join(folder, model_dir_lib.MODEL_FILE))
    preprocessing.save(os.path.join(folder, model_dir_lib.PREPROCESSING_FILE))
    model_dir_lib.write_labels(folder, list(cifar_utils.CLASS_NAMES))
    return folder


@pytest.mark.parametrize("mode, tolerance, agreement", [
    ("fold_bn", TOLERANCE, 1.0),
    ("fold_bn_bf16", 0.05, 0.95),
])
def test_optimized_export_answers_as_the_model(model_dir, cifar_arrays, tmp_path,  # noqa: F811
                                               mode, tolerance, agreement):
    path = run_export(f"--model_dir={model_dir}", f"--export_base={tmp_path}",
                      f"--optimize_for_inference={mode}")
    images, _ = cifar_arrays["test"]
    pixels = tf.constant(images.astype("float32"))
    served = tf.saved_model.load(path).signatures["predict_tensor"](pixels=pixels)
    got = served["probabilities"].numpy()
    model = model_dir_lib.load_trained_model(model_dir)
    preprocessing = EvalPreprocessing.load(os.path.join(model_dir, "preprocessing.json"))
    want = model.predict(tf.stack([preprocessing(i) for i in images]), verbose=0)
    assert got.dtype == np.float32
    assert np.abs(got - want).max() < tolerance
    assert (got.argmax(1) == want.argmax(1)).mean() >= agreement
    assert list(served["classes"].numpy()) == list(got.argmax(1))
    # The folded graph holds no BN statistics: fewer variables than the model.
    variables = tf.train.list_variables(os.path.join(path, "variables", "variables"))
    assert not any("moving_variance" in name for name, _ in variables)


def test_the_flag_rejects_other_modes(model_dir, tmp_path):
    with pytest.raises(flags.IllegalFlagValueError):
        run_export(f"--model_dir={model_dir}", f"--export_base={tmp_path}",
                   "--optimize_for_inference=int8")
    with pytest.raises(ValueError, match="optimize_for_inference"):
        sources.load_source(model_dir=model_dir, optimize_for_inference="int8")
