"""keras_resnet.fused_bn: the same batch norm as Keras', by TensorFlow's
fused kernel: outputs, moving statistics and gradients, in float32 and
mixed_bfloat16, and in a whole ResNet-20 trained on real photos."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnet
from keras_resnet.fused_bn import FusedBatchNormalization


@pytest.fixture
def policy():
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_same_as_keras_batch_normalization(policy, precision):
    policy(precision)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2, 3, (8, 6, 6, 5)).astype("float32"))
    upstream = tf.constant(rng.normal(0, 1, x.shape).astype("float32"))
    layers = [cls(momentum=0.9, epsilon=1.001e-5) for cls in
              (keras.layers.BatchNormalization, FusedBatchNormalization)]
    weights = [np.linspace(0.5, 1.5, 5), np.linspace(-1, 1, 5), np.zeros(5), np.ones(5)]
    outputs, grads = [], []
    for layer in layers:
        layer.build(x.shape)
        layer.set_weights(weights)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
        outputs.append(np.float32(y))
        grads.append([np.float32(g) for g in tape.gradient(loss, [x, layer.gamma, layer.beta])])
        assert y.dtype == layer.compute_dtype
    tolerance = 1e-5 if precision == "float32" else 2e-2
    np.testing.assert_allclose(outputs[1], outputs[0], atol=tolerance * 10)
    for got, want in zip(grads[1], grads[0]):  # sums of large terms: relative to the largest
        np.testing.assert_allclose(got, want, atol=tolerance * np.abs(want).max())
    for name in ("moving_mean", "moving_variance"):  # biased variance, as Keras keeps
        np.testing.assert_allclose(getattr(layers[1], name).numpy(),
                                   getattr(layers[0], name).numpy(), rtol=1e-5)
    np.testing.assert_allclose(np.float32(layers[1](x)), np.float32(layers[0](x)),
                               atol=tolerance * 10)


def test_falls_back_where_the_kernel_cannot(policy):
    x = tf.ones((2, 3, 4))  # 3-D: Keras' own computation
    layer = FusedBatchNormalization(epsilon=1.001e-5)
    np.testing.assert_allclose(layer(x, training=True).numpy(), 0.0, atol=1e-6)


def test_builders_use_it_and_models_reload(tmp_path, photo):
    model = keras_resnet.ResNet20()
    assert all(type(layer) is FusedBatchNormalization for layer in model.layers
               if isinstance(layer, keras.layers.BatchNormalization))
    assert not any(type(layer) is FusedBatchNormalization
                   for layer in keras_resnet.ResNet20(fused_bn=False).layers)
    path = str(tmp_path / "resnet20.keras")
    model.save(path)
    x = (np.stack([photo("chelsea", 32), photo("coffee", 32)]) - 127.5) / 64.0
    np.testing.assert_allclose(keras.models.load_model(path).predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("shape", [(8, 8, 8, 64), (8, 32, 32, 16)])
def test_input_gradient_is_exact_to_float32(shape):
    """dL/dx against the same normalization computed in float64."""
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(1, 2, shape).astype("float32"))
    upstream = tf.constant(rng.normal(0, 1, shape).astype("float32"))
    layer = FusedBatchNormalization(epsilon=1.001e-5)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x, training=True) * upstream)
    got = tape.gradient(loss, x).numpy()
    x64 = tf.cast(x, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x64)
        mean, variance = tf.nn.moments(x64, [0, 1, 2])
        y = (x64 - mean) / tf.sqrt(variance + 1.001e-5)
        loss = tf.reduce_sum(y * tf.cast(upstream, tf.float64))
    want = tape.gradient(loss, x64).numpy()
    assert np.abs(got - want).max() < 2e-6 * np.abs(want).max()


def test_training_matches_keras_layers(photo):
    """A ResNet-20 from the same weights, fitted on real photos with fused and
    with Keras BN: the same losses step by step (to float32 rounding, which
    ReLU masks then amplify a little)."""
    x = np.stack([photo(name, 32) for name in ("chelsea", "astronaut", "coffee", "rocket")] * 4)
    x = (x - 127.5) / 64.0
    y = np.arange(len(x)) % 10
    keras.utils.set_random_seed(3)
    plain = keras_resnet.ResNet20(fused_bn=False)
    fused = keras_resnet.ResNet20()
    fused.set_weights(plain.get_weights())
    losses = []
    for model in (plain, fused):
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
        history = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
        losses.append(history.history["loss"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=2e-3)
