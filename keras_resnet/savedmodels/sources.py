"""Where an export's model, preprocessing and class names come from.

One of three sources, as the export flags name them:

  model_dir   a trainer's model_dir: model.keras (or its newest checkpoint),
              preprocessing.json and labels.txt
  keras_file  a .keras file; inside a model_dir (model.keras or
              checkpoints/ckpt-*.keras) that model_dir's files are used
  model       a zoo name with weights: cifar10, imagenet or a weights file

`preprocessing` (an EvalPreprocessing json) and `labels` (a text file, one
class name per line) override what the source provides. Without labels, a
10-class CIFAR model gets the CIFAR-10 names, a 1000-class ImageNet model
the ImageNet names if keras has them cached, any other its class numbers.
`optimize_for_inference` (keras_resnet.inference.MODES) rewrites the loaded
model for serving: BN folded into the convolutions, optionally bfloat16.
"""

import dataclasses
import json
import os

import keras

import keras_resnet
from keras_resnet import cifar_utils, inference
from keras_resnet import model_dir as model_dir_lib
from keras_resnet import weights as weights_lib
from keras_resnet.preprocessing import EvalPreprocessing
from keras_resnet.savedmodels import signatures

IMAGENET_CLASS_INDEX = "imagenet_class_index.json"


@dataclasses.dataclass
class Source:
    model: keras.Model
    preprocessing: EvalPreprocessing
    class_names: list
    name: str  # the default model name


def _check_file(flag, path):
    if not os.path.isfile(path):
        raise ValueError(f"--{flag}={path!r}: no such file")


def _read_class_names(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def _load_preprocessing(flag, path):
    _check_file(flag, path)
    try:
        return EvalPreprocessing.load(path)
    except (ValueError, TypeError) as error:
        raise ValueError(f"--{flag}={path!r} is not an EvalPreprocessing json: {error}") from None


def _imagenet_class_names():
    """keras.applications' ImageNet names if a download left them cached."""
    homes = [os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "/tmp/.keras"]
    for home in homes:
        path = os.path.join(home, "models", IMAGENET_CLASS_INDEX)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                index = json.load(f)
            return [index[str(i)][1] for i in range(len(index))]
    return None


def default_class_names(classes, preprocessing):
    if preprocessing.kind == "cifar" and classes == len(cifar_utils.CLASS_NAMES):
        return list(cifar_utils.CLASS_NAMES)
    if preprocessing.kind == "imagenet" and classes == 1000:
        names = _imagenet_class_names()
        if names:
            return names
    return [str(i) for i in range(classes)]


def _enclosing_model_dir(keras_file):
    """The model_dir holding a model.keras or checkpoints/ckpt-*.keras, if any."""
    folder = os.path.dirname(os.path.abspath(keras_file))
    if os.path.basename(folder) == model_dir_lib.CHECKPOINT_DIR:
        folder = os.path.dirname(folder)
    if os.path.isfile(os.path.join(folder, model_dir_lib.PREPROCESSING_FILE)):
        return folder
    return None


def _from_model_dir(model_dir):
    if not os.path.isdir(model_dir):
        raise ValueError(f"--model_dir={model_dir!r}: no such folder")
    try:
        model = model_dir_lib.load_trained_model(model_dir)
    except ValueError as error:
        raise ValueError(f"--model_dir: {error}") from None
    return model, model_dir, os.path.basename(os.path.normpath(model_dir))


def _from_keras_file(keras_file):
    _check_file("keras_file", keras_file)
    if not keras_file.endswith(".keras"):
        raise ValueError(f"--keras_file={keras_file!r} must be a .keras file")
    try:
        model = keras.models.load_model(keras_file, compile=False)
    except Exception as error:
        raise ValueError(f"--keras_file={keras_file!r} does not load: {error}") from None
    model_dir = _enclosing_model_dir(keras_file)
    name = (
        os.path.basename(model_dir) if model_dir
        else os.path.basename(keras_file)[: -len(".keras")]
    )
    return model, model_dir, name


def _from_zoo(model, weights):
    if not weights:
        raise ValueError(
            f"--model={model} needs --weights: cifar10, imagenet or a weights file "
            "(exporting random weights serves nothing)"
        )
    try:
        built = keras_resnet.get_model(model, weights=weights)
    except ValueError as error:
        raise ValueError(f"--model={model} --weights={weights}: {error}") from None
    return built, built.name  # the zoo's own spelling, e.g. "resnet20"


def _preprocessing_for(built, source_dir, zoo_name, weights, flag_for_error):
    """The source's own EvalPreprocessing, when it has one."""
    if source_dir is not None:
        path = os.path.join(source_dir, model_dir_lib.PREPROCESSING_FILE)
        if os.path.isfile(path):
            return _load_preprocessing("preprocessing", path)
        reason = f"{source_dir!r} has no {model_dir_lib.PREPROCESSING_FILE}"
    elif zoo_name and not keras_resnet.is_cifar_model(zoo_name):
        return EvalPreprocessing("imagenet", built.input_shape[1])
    elif zoo_name and weights == "cifar10":  # the shipped weights' own mean image
        return _load_preprocessing(
            "preprocessing", os.path.join(weights_lib.SHIPPED_DIR, cifar_utils.PREPROCESSING_FILE))
    elif zoo_name:
        reason = ("CIFAR models subtract their training set's mean image, which the "
                  "trainer saves in its model_dir's preprocessing.json")
    else:
        reason = "a .keras file does not say how its inputs were made"
    raise ValueError(f"{flag_for_error} needs --preprocessing=<EvalPreprocessing json>: {reason}")


def load_source(model_dir=None, keras_file=None, model=None, weights=None,
                preprocessing=None, labels=None, optimize_for_inference="none"):
    """The Source the export flags describe; errors name the flag at fault."""
    if optimize_for_inference not in inference.MODES:
        raise ValueError(f"--optimize_for_inference={optimize_for_inference!r} is not one "
                         f"of {', '.join(inference.MODES)}")
    given = [f"--{flag}" for flag, value in
             [("model_dir", model_dir), ("keras_file", keras_file), ("model", model)] if value]
    if len(given) != 1:
        raise ValueError(
            "give exactly one of --model_dir, --keras_file or --model"
            + (f"; got {' and '.join(given)}" if given else "")
        )
    if weights and not model:
        raise ValueError(f"--weights={weights!r} only applies to --model")
    if preprocessing:  # checked before the (slow) model loads
        eval_preprocessing = _load_preprocessing("preprocessing", preprocessing)
    if labels:
        _check_file("labels", labels)

    source_dir = zoo_name = None
    if model_dir:
        built, source_dir, name = _from_model_dir(model_dir)
    elif keras_file:
        built, source_dir, name = _from_keras_file(keras_file)
    else:
        built, zoo_name = _from_zoo(model, weights)
        name = zoo_name
    built = inference.optimize_for_inference(built, optimize_for_inference)
    if not preprocessing:
        flag = f"--model={zoo_name}" if zoo_name else f"{given[0]}={model_dir or keras_file}"
        eval_preprocessing = _preprocessing_for(built, source_dir, zoo_name, weights, flag)

    if labels:
        class_names = _read_class_names(labels)
    elif source_dir is not None and model_dir_lib.read_labels(source_dir):
        class_names = model_dir_lib.read_labels(source_dir)
    else:
        class_names = default_class_names(signatures.num_classes(built), eval_preprocessing)
    return Source(built, eval_preprocessing, class_names, name)
