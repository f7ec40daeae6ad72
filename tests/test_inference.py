"""keras_resnet.inference: BN folded into convolutions, and bfloat16, on real
images (the shared CIFAR-10 copy's slice, skimage photos)."""

import keras
import numpy as np
import pytest
from data_fixtures import cifar_arrays, cifar_tree  # noqa: F401

import keras_resnet
from keras_resnet import inference

# Float32 tolerance on softmax probabilities: folding reorders a few roundings.
TOLERANCE = 1e-4


def _bn_layers(model):
    return [layer for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)]


def _cifar_inputs(cifar_arrays, split):  # noqa: F811
    images, labels = cifar_arrays[split]
    images = images.astype("float32")
    return (images - images.mean(axis=(0, 1, 2))) / 64.0, labels


@pytest.fixture(scope="module")
def trained(cifar_arrays):  # noqa: F811
    """A ResNet-20 after a few SGD steps on real CIFAR-10 images: BN moving
    statistics of real activations (bn_momentum 0), gamma and beta moved."""
    keras.utils.set_random_seed(0)
    x, y = _cifar_inputs(cifar_arrays, "train")
    model = keras_resnet.ResNet20(bn_momentum=0.0)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=50, epochs=2, verbose=0)
    return model


def _random_statistics(model, seed=0):
    """BN layers with varied gamma, beta, mean and variance, so that a wrong
    fold cannot pass for a right one."""
    rng = np.random.default_rng(seed)
    for layer in _bn_layers(model):
        gamma, beta, mean, variance = layer.get_weights()
        layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                           rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 2.0, variance.shape)])


def test_fold_bn_equals_the_model_on_cifar_test_images(trained, cifar_arrays):  # noqa: F811
    x, _ = _cifar_inputs(cifar_arrays, "test")
    folded = inference.optimize_for_inference(trained, "fold_bn")
    want = trained.predict(x, verbose=0)
    got = folded.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, atol=TOLERANCE)
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    # Every BN is gone (v1, option A), the convolutions keep their names.
    assert _bn_layers(folded) == []
    assert len(folded.layers) == len(trained.layers) - len(_bn_layers(trained))
    convs = [layer.name for layer in trained.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.name for layer in folded.layers
            if isinstance(layer, keras.layers.Conv2D)] == convs
    assert all(folded.get_layer(name).use_bias for name in convs)
    assert folded.name == trained.name and folded.input_shape == trained.input_shape


def test_fold_bn_bf16_is_close_with_float32_outputs(trained, cifar_arrays):  # noqa: F811
    x, _ = _cifar_inputs(cifar_arrays, "test")
    fast = inference.optimize_for_inference(trained, "fold_bn_bf16")
    want = trained.predict(x, verbose=0)
    got = fast.predict(x, verbose=0)
    assert got.dtype == np.float32
    assert np.abs(got - want).max() < 0.05
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95
    assert fast.get_layer("conv1_conv").kernel.dtype == "bfloat16"
    assert fast.get_layer("predictions").kernel.dtype == "float32"
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_the_source_model_is_unchanged(trained):
    before = [w.copy() for w in trained.get_weights()]
    inference.optimize_for_inference(trained, "fold_bn_bf16")
    for old, new in zip(before, trained.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert inference.optimize_for_inference(trained, "none") is trained


@pytest.mark.parametrize("name, kwargs, size, unfolded", [
    ("resnet20", {"shortcut": "B"}, 32, 0),
    ("resnet20", {"shortcut": "C"}, 32, 0),
    ("resnet18", {}, 64, 0),  # ImageNet stem, projection shortcuts, conv biases
    ("resnet50", {"variant": "v1.5"}, 64, 0),
    ("resnet18", {"variant": "d"}, 64, 0),  # deep stem, average-pool shortcuts
    ("resnet18", {"variant": "v2"}, 64, 9),  # 8 pre-activations and the last BN stay
])
def test_fold_bn_on_photos(photo, name, kwargs, size, unfolded):
    keras.utils.set_random_seed(1)
    model = keras_resnet.get_model(name, input_shape=(size, size, 3), classes=10, **kwargs)
    _random_statistics(model)
    folded = inference.fold_batch_norm(model)
    assert len(_bn_layers(folded)) == unfolded
    assert len(inference.foldable_pairs(model)) == len(_bn_layers(model)) - unfolded
    x = np.stack([photo(p, size) for p in ("chelsea", "astronaut", "coffee", "rocket")])
    x = (x - 127.5) / 64.0
    want, got = model.predict(x, verbose=0), folded.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=1e-3)


def test_keras_batch_normalization_folds_too(photo):
    """Models built with Keras' own BN layer (fused_bn=False) fold alike."""
    model = keras_resnet.ResNet20(fused_bn=False)
    _random_statistics(model, seed=2)
    folded = inference.fold_batch_norm(model)
    x = (np.stack([photo("coffee", 32), photo("rocket", 32)]) - 127.5) / 64.0
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=TOLERANCE)
    assert _bn_layers(folded) == []


def test_bad_mode_and_model():
    model = keras_resnet.ResNet20()
    with pytest.raises(ValueError, match="fold_bn_bf16"):
        inference.optimize_for_inference(model, "bf16")
    sequential = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                                   keras.layers.BatchNormalization()])
    with pytest.raises(ValueError, match="functional"):
        inference.fold_batch_norm(sequential)


@pytest.mark.parametrize("axis, folds", [(-1, True), (3, True), (1, False), (2, False)])
def test_only_a_bn_over_the_conv_channels_folds(axis, folds):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(axis=axis, name="bn")(x)
    model = keras.Model(inputs, keras.layers.Flatten()(x))
    assert inference.foldable_pairs(model) == ({"conv": "bn"} if folds else {})
