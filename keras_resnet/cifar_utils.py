"""The input convention and class names of the shipped CIFAR-10 weights.

`ResNet20(weights="cifar10")` was trained on 32x32 RGB pixels (0..255) minus
the per-pixel mean of the training split (paper, section 4.2); that mean
ships beside the weights, so `preprocess_input` needs no dataset.
"""

import functools
import json
import os

import keras
import numpy as np

from keras_resnet.arguments import standardize_data_format
from keras_resnet import weights as weights_lib

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")
# The trainer's preprocessing.json of the run that made the shipped weights.
PREPROCESSING_FILE = "cifar10_preprocessing.json"
IMAGE_SIZE = 32


@functools.lru_cache(maxsize=1)
def mean_image():
    """The training split's per-pixel mean, (32, 32, 3) float32, RGB."""
    path = os.path.join(weights_lib.SHIPPED_DIR, PREPROCESSING_FILE)
    if not os.path.exists(path):
        raise ValueError(
            f"{path} is not in this installation: the CIFAR-10 mean image ships "
            "with the CIFAR-10 weights. Use the preprocessing.json of your own "
            "run (keras_resnet.preprocessing.EvalPreprocessing.load) instead."
        )
    with open(path, encoding="utf-8") as f:
        mean = np.asarray(json.load(f)["mean_image"], np.float32)
    mean.flags.writeable = False
    return mean


def preprocess_input(x, data_format=None):
    """Subtracts the CIFAR-10 mean image from a batch of 32x32 RGB images
    with pixels in 0..255 (numpy in, numpy out; tensors through keras.ops)."""
    channels_last = standardize_data_format(data_format) == "channels_last"
    mean = mean_image() if channels_last else np.transpose(mean_image(), (2, 0, 1))
    shape = tuple(x.shape[-3:])
    if shape != mean.shape:
        raise ValueError(
            f"x has images of shape {shape}; the CIFAR-10 weights expect {mean.shape} "
            f"({data_format or keras.config.image_data_format()}): resize to "
            f"{IMAGE_SIZE}x{IMAGE_SIZE} first"
        )
    if isinstance(x, np.ndarray):
        return x.astype(np.float32) - mean
    return keras.ops.subtract(keras.ops.cast(x, "float32"), mean)


def decode_predictions(preds, top=5):
    """Top-`top` (class index, class name, score) per image, best first."""
    preds = np.asarray(keras.ops.convert_to_numpy(preds))
    if preds.ndim != 2 or preds.shape[1] != len(CLASS_NAMES):
        raise ValueError(
            f"preds has shape {preds.shape}; expected (batch, {len(CLASS_NAMES)}) "
            "CIFAR-10 class scores"
        )
    return [
        [(int(i), CLASS_NAMES[i], float(row[i])) for i in np.argsort(row)[::-1][:top]]
        for row in preds
    ]
