"""Models saved under TensorFlow, and TensorFlow's outputs, for the other
backends to reproduce (test_backends).

`write(folder)` saves randomized zoo models as `.keras` and `.weights.h5`,
with fixed real inputs and the logits TensorFlow computes for them, and the
probabilities of the shipped weights="cifar10" on real CIFAR-10 test images. Under
JAX or PyTorch, test_backends runs this file with a TensorFlow environment's
Python:

    KERAS_BACKEND=tensorflow python tests/tensorflow_reference.py FOLDER
"""

import pathlib
import sys

import keras
import numpy as np

import keras_resnet as kr
from applications_weights import randomize
from conftest import _cifar_test_images, _photo
from keras_resnet import cifar_utils

PHOTOS = ("chelsea", "astronaut", "coffee", "rocket")
# The two layouts the zoo's files take: option-A shortcuts (ZeroPadShortcut)
# on the CIFAR stem; projections on the ImageNet stem. Logits, not softmax.
MODELS = {
    "resnet20": dict(classifier_activation=None),
    "resnet18": dict(input_shape=(64, 64, 3), classes=10, classifier_activation=None),
}
REFERENCE_FILE = "reference.npz"


def inputs(name):
    """Real photos, preprocessed as each model's family expects."""
    size = MODELS[name].get("input_shape", (32, 32))[0]
    x = np.stack([_photo(photo, size) for photo in PHOTOS])
    return cifar_utils.preprocess_input(x) if kr.is_cifar_model(name) else kr.preprocess_input(x)


def cifar10_inputs():
    """The first two CIFAR-10 test images of each class, preprocessed."""
    return cifar_utils.preprocess_input(_cifar_test_images(2)[0])


def unit_logits(model, x):
    """Scales the classifier so that the logits on `x` have unit spread, as
    a trained net's have: then 1e-5 tells rounding from a real difference."""
    dense = model.get_layer("predictions")
    spread = model.predict(x, verbose=0).std()
    dense.kernel.assign(dense.kernel / spread)
    dense.bias.assign(dense.bias / spread)


def write(folder):
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("the reference files are TensorFlow's: run with KERAS_BACKEND=tensorflow")
    folder = pathlib.Path(folder)
    arrays = {}
    for name, kwargs in MODELS.items():
        model = kr.get_model(name, **kwargs)
        randomize(model)
        x = inputs(name)
        unit_logits(model, x)
        model.save(folder / f"{name}.keras")
        model.save_weights(folder / f"{name}.weights.h5")
        arrays[f"{name}_x"], arrays[f"{name}_logits"] = x, model.predict(x, verbose=0)
    shipped = kr.ResNet20(weights="cifar10")
    arrays["cifar10_probabilities"] = shipped.predict(cifar10_inputs(), verbose=0)
    np.savez(folder / REFERENCE_FILE, **arrays)


if __name__ == "__main__":
    write(sys.argv[1])
