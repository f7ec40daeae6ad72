"""keras.applications' conformance checks, asked of every zoo model.

Keras checks its own applications with one suite
(keras/src/applications/applications_test.py), under both global image data
formats; this module asks the same of keras_resnet's builders, under
whichever Keras backend runs it. Every zoo model is built at its default input
shape with pooling="max", which must follow the data format in force. The
cases that build more models run on the smallest net of each family, whose
builder and blocks the deeper ones share (building ResNet-1202 alone takes
half a minute on 2 cores): ResNet-18 (ImageNet, basic blocks), ResNet-50
(bottleneck), Plain18, ResNet-20 (CIFAR) and Plain20.

keras' weights case runs weights="imagenet" on a photo. Offline, this one
runs what ships, weights="cifar10" on real CIFAR-10 test images, and loads
keras.applications-format ResNet-50/101/152 files that it writes itself.
"""

import keras
import numpy as np
import pytest

import keras_resnet as kr
from applications_weights import image_data_format, predict, reference
from conftest import FAMILIES
from keras_resnet import cifar_utils


def channels_out(name):
    """Channels of the last stage: keras' `last_dim`."""
    if kr.is_cifar_model(name):
        return 64
    block, _ = kr.resnet.IMAGENET_DEPTHS[int(name.lstrip("resnetplain"))]
    return 2048 if block == "bottleneck" else 512


def side_out(name, side):
    """Output height or width: the ImageNet nets halve a side five times,
    the CIFAR nets twice (each halving rounds up)."""
    return -(-side // (4 if kr.is_cifar_model(name) else 32))


@pytest.fixture(params=["channels_last", "channels_first"])
def data_format(request):
    """Runs the test under each global image data format, restored after."""
    with image_data_format(request.param):
        yield request.param


def in_format(height, width, channels):
    """An image shape in the data format in force."""
    if keras.config.image_data_format() == "channels_first":
        return (channels, height, width)
    return (height, width, channels)


def to_format(images):
    """NHWC images in the data format in force."""
    if keras.config.image_data_format() == "channels_first":
        return np.transpose(images, (0, 3, 1, 2))
    return images


@pytest.mark.parametrize("name", kr.list_models())
def test_default_input_shape_follows_the_data_format(name, data_format):
    model = kr.get_model(name, weights=None, include_top=False, pooling="max")
    size = 32 if kr.is_cifar_model(name) else 224
    assert model.input_shape == (None, *in_format(size, size, 3))
    assert model.output_shape == (None, channels_out(name))


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("channels", [1, 4])
def test_notop_variable_input_channels(name, channels, data_format):
    model = kr.get_model(name, weights=None, include_top=False,
                         input_shape=in_format(None, None, channels))
    assert model.output_shape == (None, *in_format(None, None, channels_out(name)))


@pytest.mark.parametrize("name", FAMILIES)
def test_notop_custom_input_shape(name, data_format):
    model = kr.get_model(name, weights=None, include_top=False,
                         input_shape=in_format(123, 123, 3))
    side = side_out(name, 123)
    assert model.output_shape == (None, *in_format(side, side, channels_out(name)))


@pytest.mark.parametrize("name", FAMILIES)
def test_notop_custom_input_tensor(name, data_format):
    inputs = keras.Input(in_format(200, 200, 4), name="custom_input")
    x = keras.layers.Conv2D(3, 2, strides=2)(inputs)  # 100x100x3
    model = kr.get_model(name, weights=None, include_top=False, input_tensor=x)
    assert model.inputs[0] is inputs
    side = side_out(name, 100)
    assert model.output_shape == (None, *in_format(side, side, channels_out(name)))


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("activation, function", [("softmax", "softmax"), (None, "linear")])
def test_classifier_activation(name, activation, function):
    model = kr.get_model(name, weights=None, include_top=True,
                         classifier_activation=activation)
    assert model.layers[-1].activation.__name__ == function


@pytest.mark.parametrize("name", FAMILIES)
def test_serialization_round_trip(name, data_format):
    model = kr.get_model(name, weights=None)
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert keras.saving.serialize_keras_object(rebuilt) == keras.saving.serialize_keras_object(model)
    assert [w.shape for w in rebuilt.weights] == [w.shape for w in model.weights]
    assert rebuilt.input_shape == model.input_shape


# --- weights -------------------------------------------------------------------


def test_shipped_cifar10_weights_classify_real_test_images(cifar_test_images, data_format):
    """The first 10 test images of each class: the shipped ResNet-20 gets at
    least 80 of these 100 right (its whole-split figure is in results.json)."""
    images, labels = cifar_test_images(10)
    model = kr.ResNet20(weights="cifar10")
    scores = model.predict(cifar_utils.preprocess_input(to_format(images)), verbose=0)
    top = cifar_utils.decode_predictions(scores, top=1)
    assert [row[0][1] for row in top] == [cifar_utils.CLASS_NAMES[i] for i in scores.argmax(1)]
    assert np.mean(scores.argmax(axis=1) == labels) >= 0.8
    # Serializable with its weights, as keras' suite checks of its own.
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert len(rebuilt.weights) == len(model.weights)


@pytest.fixture(scope="module")
def keras_applications_file(tmp_path_factory, photo):
    """`keras_applications_file(depth)`: a keras.applications ResNet's
    randomized weights in its legacy layout, with an input and its logits;
    written once per depth (channels-last: the weights fit either format)."""
    made = {}

    def make(depth):
        if depth not in made:
            folder = tmp_path_factory.mktemp(f"resnet{depth}")
            files, _, x, expected = reference(depth, True, 64, folder, photo)
            made[depth] = files["legacy h5"], x, expected
        return made[depth]

    return make


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_keras_applications_weight_files_load(depth, keras_applications_file, data_format):
    path, x, expected = keras_applications_file(depth)
    assert np.abs(expected).max() > 0.1 and expected.std() > 0.05  # a meaningful output
    model = kr.get_model(f"resnet{depth}", weights=path, input_shape=in_format(64, 64, 3),
                         classifier_activation=None)
    np.testing.assert_allclose(predict(model, to_format(x)), expected, rtol=0, atol=1e-5)
