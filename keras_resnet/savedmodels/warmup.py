"""TF Serving's warm-up file: requests the server replays when it loads a model.

`assets.extra/tf_serving_warmup_requests` is a TFRecord file of
tensorflow.serving.PredictionLog protos. The server runs each request once
before it marks the version available, so the first real request does not
pay for graph initialization; a request that fails makes the version fail to
load, which is why export replays them itself (`savedmodels.predict_api`).

The default images are real photos from scikit-image's data set, small and
shipped here: chelsea.jpg (Stefan van der Walt, CC0), coffee.jpg (Rachel
Michetti, CC0) and rocket.png (NASA, public domain).
"""

import glob
import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from keras_resnet.preprocessing import decode_image
from keras_resnet.savedmodels import images as images_lib
from keras_resnet.savedmodels import signatures

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
DEFAULT_IMAGES = sorted(
    glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "warmup_images", "*"))
)


def read_images(paths):
    """The bytes of each image file, checked to decode."""
    images = []
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        try:
            images_lib.decode(data, path)
        except tf.errors.InvalidArgumentError as error:
            raise ValueError(f"warm-up image {path!r} does not decode: {error.message}") from None
        images.append(data)
    if not images:
        raise ValueError("warm-up needs at least one image")
    return images


def tf_example(image_bytes):
    """A serialized tf.Example holding one encoded image, as classify takes."""
    feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes]))
    example = tf.train.Example(
        features=tf.train.Features(feature={signatures.EXAMPLE_IMAGE_KEY: feature})
    )
    return example.SerializeToString()


def predict_request(model_name, signature_name, values):
    """A PredictRequest feeding `values` to the signature's one input."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs[signatures.SIGNATURE_INPUTS[signature_name]].CopyFrom(
        tf.make_tensor_proto(values)
    )
    return request


def warmup_requests(model_name, images, preprocessing):
    """One request per signature, and one batch of every image.

    `images` are encoded image bytes; predict_tensor gets the first one
    resized as evaluation resizes it.
    """
    pixels = preprocessing.resize(decode_image(images[0])).numpy()[np.newaxis]
    return [
        predict_request(model_name, signatures.SERVING_DEFAULT, images[:1]),
        predict_request(model_name, signatures.SERVING_DEFAULT, images),
        predict_request(model_name, signatures.PREDICT_TENSOR, pixels),
        # TF Serving's Predict also runs classify-method signatures.
        predict_request(model_name, signatures.CLASSIFY, [tf_example(images[0])]),
    ]


def write_warmup(saved_model_dir, requests):
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path


def read_warmup(saved_model_dir):
    """The PredictionLog records of a SavedModel's warm-up file."""
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    logs = []
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record)
        logs.append(log)
    return logs
