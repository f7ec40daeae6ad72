"""Pretrained weights: keras.applications' ImageNet files and our CIFAR-10 ones.

A weights file is checked against the architecture before it is trusted: a
mismatch is a ValueError that names the file, never a half-loaded model.
"""

import json
import os

import keras

from keras_resnet.arguments import standardize_data_format

PRETRAINED_NAMES = ("imagenet", "cifar10")
KERAS_APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
# md5 of keras.applications' files: (with top, without top).
IMAGENET_HASHES = {
    "resnet50": ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    "resnet152": ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
}
SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")
# CIFAR-10 weights trained by trainers.train and shipped inside the package
# (trainers.publish writes them): the paper's Table 6 nets, where trained.
CIFAR10_FILES = {name: f"{name}_cifar10.weights.h5"
                 for name in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")}
# What a pretrained file was trained as: the arguments that must match it.
REQUIREMENTS = {
    "imagenet": {"variant": "v1", "shortcut": "B", "classes": 1000, "channels": 3},
    "cifar10": {"variant": "v1", "shortcut": "A", "classes": 10, "channels": 3},
}
WEIGHT_SUFFIXES = (".weights.h5", ".h5", ".keras")


def available(zoo_name):
    """The pretrained names that exist for a zoo model."""
    names = []
    if zoo_name in IMAGENET_HASHES:
        names.append("imagenet")
    if zoo_name in shipped_cifar10():
        names.append("cifar10")
    return names


def shipped_cifar10():
    """The zoo names whose CIFAR-10 weights are in this installation."""
    return [name for name, file in CIFAR10_FILES.items()
            if os.path.exists(os.path.join(SHIPPED_DIR, file))]


def check_pretrained(zoo_name, weights, *, include_top, classes, variant="v1",
                     shortcut=None, input_shape=None, data_format=None):
    """Fails before anything is built or downloaded if `weights` cannot fit."""
    if weights not in available(zoo_name):
        raise ValueError(
            f"weights={weights!r} does not exist for {zoo_name}; pretrained "
            f"{weights} weights exist for: "
            + ", ".join(sorted(IMAGENET_HASHES) if weights == "imagenet" else shipped_cifar10())
            + ". Pass weights=None or the path of a weights file instead"
            + ("" if weights == "imagenet" else
               " (python -m keras_resnet.trainers.train, then its model_dir/model.keras)")
            + "."
        )
    need = REQUIREMENTS[weights]
    given = {"variant": variant, "shortcut": shortcut}
    if include_top:
        given["classes"] = classes
    if input_shape is not None:
        channels_last = standardize_data_format(data_format) == "channels_last"
        given["channels"] = input_shape[-1] if channels_last else input_shape[0]
    for key, value in given.items():
        if value is not None and value != need[key]:
            raise ValueError(
                f"{key}={value!r} does not fit weights={weights!r}, which were "
                f"trained with {key}={need[key]!r}"
            )


def _download_imagenet(zoo_name, include_top):
    suffix = "" if include_top else "_notop"
    fname = f"{zoo_name}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
    url = KERAS_APPLICATIONS_URL + fname
    try:
        return keras.utils.get_file(
            fname, url, cache_subdir="models",
            file_hash=IMAGENET_HASHES[zoo_name][0 if include_top else 1],
        )
    except Exception as error:  # get_file raises bare Exceptions offline
        raise ValueError(
            f"weights='imagenet': could not download {url} ({error}). Offline, "
            f"fetch that file on a machine with internet access, copy it to "
            f"~/.keras/models/{fname}, or pass its path as weights='<path>'."
        ) from error


def cifar10_results_file(zoo_name, folder=None):
    """Where the CIFAR-10 weights' results.json (test accuracy) lives in
    `folder` (default: the package's shipped files)."""
    name = CIFAR10_FILES[zoo_name].replace(".weights.h5", ".results.json")
    return os.path.join(folder or SHIPPED_DIR, name)


def cifar10_results(zoo_name):
    """The results.json of the run behind the shipped CIFAR-10 weights, or None."""
    path = cifar10_results_file(zoo_name) if zoo_name in CIFAR10_FILES else None
    if path is None or not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def pretrained_file(zoo_name, weights, include_top):
    """The local path of named weights, downloaded first where needed.

    The shipped CIFAR-10 files hold the classifier, whatever `include_top`."""
    if weights == "imagenet":
        return _download_imagenet(zoo_name, include_top)
    return os.path.join(SHIPPED_DIR, CIFAR10_FILES[zoo_name])


def copy_weights_by_name(source, target):
    """Sets every layer of `target` that has weights from the same-named
    layer of `source` (a headless model from a full one)."""
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())


def load_weights_file(model, path):
    """`model.load_weights` with errors that name the file and the model."""
    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        raise ValueError(
            f"weights={path!r} is neither None, a pretrained name "
            f"({', '.join(PRETRAINED_NAMES)}) nor an existing weights file"
        )
    path = os.fspath(path)
    if not path.endswith(WEIGHT_SUFFIXES):
        raise ValueError(
            f"weights={path!r}: unknown format; allowed suffixes: "
            + ", ".join(WEIGHT_SUFFIXES)
        )
    try:
        model.load_weights(path)
    except Exception as error:
        raise ValueError(
            f"weights file {path!r} does not fit model {model.name!r} "
            f"({len(model.weights)} weights): {error}"
        ) from error
