"""keras.applications' ResNet weight files, written by the tests themselves.

keras.applications' models are built with weights=None and randomized (BN
statistics, gammas, betas and biases start at constants that would hide a
mix-up), then saved in both formats it ships: Keras 3 `.weights.h5` and the
legacy `resnet50_weights_tf_dim_ordering_tf_kernels.h5` layout. Channels-last
throughout, as keras.applications publishes them.
"""

import contextlib

import h5py
import keras
import numpy as np
from keras.src.legacy.saving import legacy_h5_format

import keras_resnet as kr

APPLICATIONS = {
    50: keras.applications.ResNet50,
    101: keras.applications.ResNet101,
    152: keras.applications.ResNet152,
}


@contextlib.contextmanager
def image_data_format(data_format):
    """keras.config's global image data format, restored on exit."""
    before = keras.config.image_data_format()
    keras.config.set_image_data_format(data_format)
    try:
        yield
    finally:
        keras.config.set_image_data_format(before)


def randomize(model, seed=0):
    """Random BN statistics, gammas, betas and biases (kernels are random
    already), scaled so that the logits stay O(1) and comparable."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        path, shape = variable.path, tuple(variable.shape)
        if path.endswith("kernel"):
            continue
        if path.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, shape)
        elif path.endswith("gamma"):
            value = rng.uniform(0.5, 1.0, shape)
        else:  # beta, moving_mean, bias
            value = rng.normal(0.0, 0.1, shape)
        variable.assign(value.astype("float32"))


def save_both_formats(model, folder, depth, include_top):
    """The model's weights as `.weights.h5` and as keras.applications' legacy file."""
    suffix = "" if include_top else "_notop"
    legacy = folder / f"resnet{depth}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
    with h5py.File(legacy, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    modern = folder / f"resnet{depth}{suffix}.weights.h5"
    model.save_weights(modern)
    return {"weights.h5": str(modern), "legacy h5": str(legacy)}


def predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def reference(depth, include_top, size, folder, photo):
    """keras.applications' model, randomized and saved: (files, the
    builder kwargs it was made with, an input, its outputs)."""
    kwargs = dict(include_top=include_top, input_shape=(size, size, 3))
    if include_top:
        kwargs["classifier_activation"] = None  # logits: softmax would hide differences
    with image_data_format("channels_last"):
        model = APPLICATIONS[depth](weights=None, **kwargs)
        randomize(model)
        x = kr.preprocess_input(np.array(photo("chelsea", size))[None])
        files = save_both_formats(model, folder, depth, include_top)
        return files, kwargs, x, predict(model, x)
