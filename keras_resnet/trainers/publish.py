"""Turns a finished CIFAR-10 run into the weights that ship with the package.

    python -m keras_resnet.trainers.publish --model_dir=/work/runs/resnet20_paper \
        --data_dir=../shared/datasets/cifar10-jpeg.tar.gz --output_dir=keras_resnet/pretrained

Writes <output_dir>/<model>_cifar10.weights.h5 (float32, whatever
precision trained it), the run's results.json (the README's zoo table quotes
its test accuracy) and the run's mean image, which
`keras_resnet.cifar_utils.preprocess_input` subtracts. The copy is checked
against the fingerprint of the weights that the run evaluated. results.json
also records the float32 copy's accuracy on the first CHECK_IMAGES test
images: a check quick enough for every test run, where scoring all 10,000
belongs to a benchmark.
"""

import json
import os

import keras
import numpy as np
from absl import app, flags

import keras_resnet
from keras_resnet import cifar_utils
from keras_resnet import model_dir as model_dir_lib
from keras_resnet import weights as weights_lib
from keras_resnet.preprocessing import EvalPreprocessing
from keras_resnet.trainers.data import cifar10
from keras_resnet.trainers.loop import RESULTS_FILE, weights_fingerprint

FLAGS = flags.FLAGS
CHECK_IMAGES = 1000


def define_flags():
    flags.DEFINE_string("model_dir", None, "A finished CIFAR-10 run of trainers.train.")
    flags.DEFINE_string("data_dir", None, "The CIFAR-10 copy the run was evaluated on: the "
                        f"float32 weights are scored on its first {CHECK_IMAGES} test images.")
    # No default: the package's own folder is site-packages when it is
    # installed from a wheel, and publishing belongs in a source checkout.
    flags.DEFINE_string("output_dir", None, "Where to write: keras_resnet/pretrained of a "
                        "source checkout ships the weights with the package.")
    flags.mark_flags_as_required(["model_dir", "data_dir", "output_dir"])


def _finished_run(model_dir):
    path = os.path.join(model_dir, RESULTS_FILE)
    final = os.path.join(model_dir, model_dir_lib.MODEL_FILE)
    if not (os.path.exists(path) and os.path.exists(final)):
        raise ValueError(
            f"--model_dir={model_dir} holds no finished run (results.json and "
            f"{model_dir_lib.MODEL_FILE}); let trainers.train finish first"
        )
    with open(path, encoding="utf-8") as f:
        results = json.load(f)
    if results.get("dataset") != "cifar10" or results.get("model") not in weights_lib.CIFAR10_FILES:
        raise ValueError(
            f"--model_dir={model_dir} trained {results.get('model')} on "
            f"{results.get('dataset')}; the package ships CIFAR-10 weights for: "
            + ", ".join(sorted(weights_lib.CIFAR10_FILES))
        )
    if results.get("eval_split") != "test":
        raise ValueError(
            f"--model_dir={model_dir} was evaluated on {results.get('eval_split')!r} "
            "(--validation_split), not on the test set; shipped weights quote their test "
            "accuracy: retrain without --validation_split"
        )
    labels = model_dir_lib.read_labels(model_dir)
    if tuple(labels or ()) != cifar_utils.CLASS_NAMES:
        raise ValueError(f"--model_dir={model_dir} has labels {labels}; "
                         f"expected {list(cifar_utils.CLASS_NAMES)}")
    return results, final


def float32_check(model, mean_image, data_dir):
    """Accuracy of `model` on the first CHECK_IMAGES test images."""
    images, labels = cifar10.load_arrays(data_dir, "test")
    inputs = images[:CHECK_IMAGES].astype("float32") - mean_image
    scores = model.predict(inputs, batch_size=500, verbose=0)
    return {"test_images": CHECK_IMAGES,
            "accuracy": float(np.mean(scores.argmax(axis=1) == labels[:CHECK_IMAGES]))}


def publish(model_dir, output_dir, data_dir):
    """Writes the weights, results and mean image; returns the weights
    file's path and the results it shipped."""
    results, final = _finished_run(model_dir)
    preprocessing = EvalPreprocessing.load(
        os.path.join(model_dir, model_dir_lib.PREPROCESSING_FILE))
    if preprocessing.kind != "cifar" or preprocessing.image_size != cifar_utils.IMAGE_SIZE:
        raise ValueError(f"--model_dir={model_dir} was not trained on 32x32 CIFAR inputs")
    trained = keras.models.load_model(final, compile=False)
    shipped = keras_resnet.get_model(results["model"], weights=None, classes=10)
    weights_lib.copy_weights_by_name(trained, shipped)
    if weights_fingerprint(shipped) != results["weights_sha256"]:
        raise ValueError(f"the weights of {final} are not the ones its results.json evaluated")
    results = {**results,
               "float32_check": float32_check(shipped, preprocessing.mean_image, data_dir)}
    path = os.path.join(output_dir, weights_lib.CIFAR10_FILES[results["model"]])
    model_dir_lib.atomic_write(path, shipped.save_weights)
    model_dir_lib.atomic_write(os.path.join(output_dir, cifar_utils.PREPROCESSING_FILE),
                               preprocessing.save)
    model_dir_lib.write_json(weights_lib.cifar10_results_file(results["model"], output_dir),
                             results)
    return path, results


def main(argv):
    del argv
    try:
        path, results = publish(FLAGS.model_dir, FLAGS.output_dir, FLAGS.data_dir)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    print(f"Wrote {path}: {results['model']}, step {results['step']}, "
          f"test accuracy {results['eval_accuracy']:.4f} on {results['eval_examples']} images "
          f"(float32: {results['float32_check']['accuracy']:.4f} on the first "
          f"{CHECK_IMAGES})")


if __name__ == "__main__":
    define_flags()
    app.run(main)
