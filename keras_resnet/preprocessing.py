"""The paper's image recipes as tf ops: one definition of evaluation and
normalization shared by the input pipelines, evaluation and SavedModels.

Everything here takes and returns single images (HWC); the pipelines map it
over batches. Kept out of `keras_resnet/__init__` so that the model builders
import without TensorFlow (they also run under JAX and PyTorch).
"""

import dataclasses
import json

import numpy as np
import tensorflow as tf

from keras_resnet.arguments import check_choice

KINDS = ("cifar", "imagenet")
# keras.applications' "caffe" convention: BGR order, ImageNet mean subtracted.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
# Shorter side before the centre crop: 256 for 224 (paper, section 3.4).
EVAL_RESIZE_RATIO = 256 / 224
CIFAR_PAD = 4


def decode_image(image_bytes, channels=3):
    """Decodes JPEG, PNG, GIF (first frame) or BMP to uint8 HWC.

    A corrupt image raises InvalidArgumentError from TensorFlow's decoder.
    """
    image = tf.io.decode_image(
        image_bytes, channels=channels, expand_animations=False, dtype=tf.uint8
    )
    image.set_shape([None, None, channels])
    return image


def imagenet_normalize(image):
    """RGB 0..255 to keras.applications' ResNet input (BGR, mean-free)."""
    image = tf.cast(image, tf.float32)[..., ::-1]
    return image - tf.constant(IMAGENET_MEAN_BGR, tf.float32)


def resize_shorter_side(image, size):
    """Resizes so the shorter side is `size`, keeping the aspect ratio."""
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = tf.cast(size, tf.float32) / tf.minimum(h, w)
    new = tf.cast(tf.round(tf.stack([h * scale, w * scale])), tf.int32)
    return tf.image.resize(image, new, method="bilinear", antialias=True)


def center_crop(image, size):
    shape = tf.shape(image)
    top = (shape[0] - size) // 2
    left = (shape[1] - size) // 2
    return image[top : top + size, left : left + size]


def ten_crops(image, size):
    """The paper's 10-crop test views: four corners and centre, and their flips."""
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    offsets = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size),
               ((h - size) // 2, (w - size) // 2)]
    crops = [tf.image.crop_to_bounding_box(image, t, left, size, size) for t, left in offsets]
    crops += [tf.image.flip_left_right(c) for c in crops]
    return tf.stack(crops)


def cifar_train_augment(image, seed=None):
    """Paper section 4.2: pad 4 pixels, random 32x32 crop, random flip."""
    size = tf.shape(image)[0]
    padded = tf.pad(image, [[CIFAR_PAD, CIFAR_PAD], [CIFAR_PAD, CIFAR_PAD], [0, 0]])
    crop = tf.image.random_crop(padded, tf.stack([size, size, 3]), seed=seed)
    return tf.image.random_flip_left_right(crop, seed=seed)


@dataclasses.dataclass
class EvalPreprocessing:
    """How a model's inputs are made from a decoded RGB image, saved beside
    the model (`preprocessing.json`) so that export needs nothing else.

    kind "cifar": resize to `image_size` if needed, subtract `mean_image`
    (the per-pixel mean of the training split, paper section 4.2).
    kind "imagenet": shorter side to 256/224 * image_size, centre crop,
    keras.applications normalization.
    """

    kind: str
    image_size: int
    mean_image: np.ndarray = None

    def __post_init__(self):
        check_choice("kind", self.kind, KINDS)
        if self.kind == "cifar":
            if self.mean_image is None:
                raise ValueError("kind='cifar' needs mean_image (the training split's mean)")
            self.mean_image = np.asarray(self.mean_image, np.float32)
            expected = (self.image_size, self.image_size, 3)
            if self.mean_image.shape != expected:
                raise ValueError(
                    f"mean_image has shape {self.mean_image.shape}; expected {expected}"
                )

    def resize(self, image):
        """uint8 image of any size to the model's spatial size (float32)."""
        image = tf.cast(image, tf.float32)
        if self.kind == "cifar":
            size = self.image_size
            shape = tf.shape(image)
            # The training images are already at size: leave them bit-exact.
            return tf.cond(
                tf.logical_and(shape[0] == size, shape[1] == size),
                lambda: image,
                lambda: tf.image.resize(image, [size, size], antialias=True),
            )
        image = resize_shorter_side(image, round(self.image_size * EVAL_RESIZE_RATIO))
        return center_crop(image, self.image_size)

    def normalize(self, image):
        """Pixels 0..255 at the model's size to model inputs."""
        if self.kind == "cifar":
            return tf.cast(image, tf.float32) - tf.constant(self.mean_image)
        return imagenet_normalize(image)

    def __call__(self, image):
        return self.normalize(self.resize(image))

    def to_json(self):
        config = {"kind": self.kind, "image_size": self.image_size}
        if self.mean_image is not None:
            config["mean_image"] = np.round(self.mean_image, 4).tolist()
        return json.dumps(config)

    @classmethod
    def from_json(cls, text):
        return cls(**json.loads(text))

    def save(self, path):
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(self.to_json())

    @classmethod
    def load(cls, path):
        with tf.io.gfile.GFile(path) as f:
            return cls.from_json(f.read())
