"""One SavedModel folder, as TF Serving loads it:

  saved_model.pb, variables/          the signatures of savedmodels.signatures
  fingerprint.pb                      the checksums of saved_model.pb and variables
  assets/labels.txt                   class names, read by the class_names output
  assets.extra/tf_serving_warmup_requests

`savedmodels.versions` decides where the folder goes; this module fills it.
"""

import os
import tempfile

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.saved_model import fingerprinting_utils

from keras_resnet.savedmodels import predict_api, signatures, warmup

LABELS_ASSET = "labels.txt"


def check_exportable(model, preprocessing, class_names, top_k=None):
    """Raises the ValueError an export would, before anything is written."""
    signatures.model_image_size(model, preprocessing)
    classes = signatures.num_classes(model)
    signatures.resolve_top_k(top_k, classes)
    class_names = [str(name) for name in class_names]
    if len(class_names) != classes:
        raise ValueError(
            f"{len(class_names)} class names ({', '.join(class_names[:3])}, ...) "
            f"for a model with {classes} classes; give one name per class (--labels)"
        )
    bad = [name for name in class_names if not name.strip() or "\n" in name]
    if bad:
        raise ValueError(f"class names must be non-empty single lines; got {bad[:3]}")


def set_method_names(path, method_names):
    """Sets {signature: method name} in saved_model.pb, then rewrites
    fingerprint.pb, whose checksum covers saved_model.pb.

    tf.saved_model.save writes tensorflow/serving/predict for every
    signature, and TF Serving's Classify API only runs a signature whose
    method name is tensorflow/serving/classify.
    """
    pb = os.path.join(path, "saved_model.pb")
    proto = saved_model_pb2.SavedModel()
    with open(pb, "rb") as f:
        proto.ParseFromString(f.read())
    for meta_graph in proto.meta_graphs:
        for name, method_name in method_names.items():
            meta_graph.signature_def[name].method_name = method_name
    with open(pb, "wb") as f:
        f.write(proto.SerializeToString())
    fingerprinting_utils.write_fingerprint(path)


def write_saved_model(
    path, model, preprocessing, class_names, model_name, top_k=None,
    warmup_images=None, replay_warmup=True,
):
    """Writes the SavedModel of a Keras classifier into the folder `path`.

    `class_names`: one per model output, in class order. `warmup_images`:
    image files for the warm-up requests (default: warmup.DEFAULT_IMAGES).
    `replay_warmup`: load the result and answer every warm-up request as
    TF Serving will at load time, so that a broken export fails here.
    """
    check_exportable(model, preprocessing, class_names, top_k)
    images = warmup.read_images(warmup_images or warmup.DEFAULT_IMAGES)
    with tempfile.TemporaryDirectory() as tmp:
        labels_path = os.path.join(tmp, LABELS_ASSET)
        with open(labels_path, "w", encoding="utf-8") as f:
            f.write("".join(f"{name}\n" for name in class_names))
        module = signatures.ServingModule(model, preprocessing, labels_path, top_k)
        tf.saved_model.save(module, path, signatures=module.signatures())
    set_method_names(path, {signatures.CLASSIFY: signatures.CLASSIFY_METHOD_NAME})
    requests = warmup.warmup_requests(model_name, images, preprocessing)
    warmup.write_warmup(path, requests)
    if replay_warmup:
        loaded = tf.saved_model.load(path)
        for request in requests:
            predict_api.predict(loaded, request)
    return path
