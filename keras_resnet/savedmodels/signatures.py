"""The serving signatures: what a SavedModel takes in and gives back.

  serving_default  image_bytes: string [batch]  JPEG, PNG, GIF or BMP
  predict_tensor   pixels: float32 [batch, size, size, 3]  RGB 0..255
      both give OUTPUTS, for TF Serving's Predict API
  classify         inputs: string [batch]  serialized tf.Example, image/encoded
      gives classes (string [batch, top_k], class names) and scores (float32
      [batch, top_k]), for TF Serving's Classify API (gRPC Classify,
      /v1/models/<name>:classify); its method name is set by
      savedmodels.saved_model, since tf.saved_model.save writes predict's.
      A real Classify signature rather than a predict-only one taking
      tf.Examples: Classify is the server's API for classifiers, whose
      clients send features and get labelled scores without knowing any
      tensor name, and Predict runs this signature as well.

Encoded images go through `savedmodels.images` (checked, bounded decoding)
and `EvalPreprocessing`, the one definition of evaluation preprocessing;
pixels get its normalization only. Outputs are float32 even when the model
computes in mixed precision. An empty batch is an InvalidArgument.
"""

import tensorflow as tf

from keras_resnet.savedmodels import images

SERVING_DEFAULT = "serving_default"
PREDICT_TENSOR = "predict_tensor"
CLASSIFY = "classify"
SIGNATURE_INPUTS = {
    SERVING_DEFAULT: "image_bytes",
    PREDICT_TENSOR: "pixels",
    CLASSIFY: "inputs",  # the names TF Serving's classifier looks up
}
CLASSIFY_METHOD_NAME = "tensorflow/serving/classify"
EXAMPLE_IMAGE_KEY = "image/encoded"
OUTPUTS = ("probabilities", "classes", "class_names", "top_k_classes", "top_k_scores")
DEFAULT_TOP_K = 5


def model_image_size(model, preprocessing):
    """The square NHWC RGB input size the model and its preprocessing share."""
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(
            f"model {model.name!r} has input shape {shape}; export needs one "
            "channels_last RGB input (batch, height, width, 3)"
        )
    size = preprocessing.image_size
    if any(side not in (None, size) for side in shape[1:3]):
        raise ValueError(
            f"model {model.name!r} takes {shape[1]}x{shape[2]} images but its "
            f"preprocessing makes {size}x{size}; pass the preprocessing the model "
            "was trained with"
        )
    return size


def num_classes(model):
    shape = tuple(model.output_shape)
    if len(shape) != 2 or shape[-1] is None:
        raise ValueError(
            f"model {model.name!r} has output shape {shape}; export needs "
            "class probabilities (batch, classes)"
        )
    return shape[-1]


def resolve_top_k(top_k, classes):
    """`top_k`, or min(DEFAULT_TOP_K, classes) for None; checked against classes."""
    k = min(DEFAULT_TOP_K, classes) if top_k is None else int(top_k)
    if not 1 <= k <= classes:
        raise ValueError(f"top_k={top_k} must be between 1 and the model's {classes} classes")
    return k


class ServingModule(tf.Module):
    """The model with its preprocessing and class names, as tf.functions.

    `labels_path` is a text file of class names, one per line in class
    order; it is saved as an asset and looked up by the `class_names` output.
    """

    def __init__(self, model, preprocessing, labels_path, top_k=None):
        super().__init__(name="serving")
        self.model = model
        self.preprocessing = preprocessing
        self.image_size = model_image_size(model, preprocessing)
        self.top_k = resolve_top_k(top_k, num_classes(model))
        self.class_names = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                labels_path,
                key_dtype=tf.int64,
                key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
                value_dtype=tf.string,
                value_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            ),
            default_value="",
        )

    def _outputs(self, inputs):
        probabilities = tf.cast(self.model(inputs, training=False), tf.float32)
        classes = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        top = tf.math.top_k(probabilities, k=self.top_k)
        return {
            "probabilities": probabilities,
            "classes": classes,
            "class_names": self.class_names.lookup(classes),
            "top_k_classes": tf.cast(top.indices, tf.int64),
            "top_k_scores": top.values,
        }

    def _model_inputs(self, image_bytes, name):
        size = self.image_size
        return images.decode_batch(
            image_bytes, name,
            lambda image: tf.ensure_shape(self.preprocessing(image), [size, size, 3]),
            tf.TensorSpec([size, size, 3], tf.float32),
        )

    def signatures(self):
        """{signature name: concrete function}, for tf.saved_model.save.

        Also tracks the variables they read as the module's own: Keras 3
        wraps its tf.Variables, and without this the SavedModel's TF1 loader
        (TF Serving, saved_model_cli run) never restores them ("Could not
        find variable", keras-team/keras#19274).
        """
        size = self.image_size

        def serving_default(image_bytes):
            return self._outputs(self._model_inputs(image_bytes, "image_bytes"))

        def predict_tensor(pixels):
            with tf.control_dependencies([images.check_not_empty(pixels, "pixels")]):
                return self._outputs(self.preprocessing.normalize(pixels))

        def classify(inputs):
            features = tf.io.parse_example(
                inputs, {EXAMPLE_IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
            )
            outputs = self._outputs(self._model_inputs(features[EXAMPLE_IMAGE_KEY], "inputs"))
            return {
                "classes": self.class_names.lookup(outputs["top_k_classes"]),
                "scores": outputs["top_k_scores"],
            }

        inputs = {
            SERVING_DEFAULT: (serving_default, [None], tf.string),
            PREDICT_TENSOR: (predict_tensor, [None, size, size, 3], tf.float32),
            CLASSIFY: (classify, [None], tf.string),
        }
        functions = {
            name: tf.function(fn).get_concrete_function(
                tf.TensorSpec(shape, dtype, name=SIGNATURE_INPUTS[name])
            )
            for name, (fn, shape, dtype) in inputs.items()
        }
        used = {}
        for function in functions.values():
            used.update((id(v), v) for v in function.variables)
        self.serving_variables = list(used.values())
        return functions
