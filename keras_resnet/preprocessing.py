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


def eval_center_crop(image, size):
    """The eval view: shorter side to 256/224 * size, the centre size x size.

    Computed as the resize-then-crop it stands for (same kernel, scales and
    offsets, to float rounding), but from the crop's window of the source
    alone (plus the kernel's reach), so that its cost is that of the window
    whatever the image's shape: a 1 x 2000 image never becomes 256 x 512000.
    Any numeric dtype in, float32 out.
    """
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    resized = tf.round(shape * round(size * EVAL_RESIZE_RATIO) / tf.reduce_min(shape))
    scale = resized / shape  # per axis, as tf.image.resize scales
    offset = tf.floor((resized - size) / 2)  # center_crop's top and left
    reach = tf.math.ceil(tf.maximum(1.0, 1.0 / scale)) + 1  # antialiased triangle kernel
    start = tf.maximum(0.0, tf.floor(offset / scale) - reach)
    end = tf.minimum(shape, tf.math.ceil((offset + size) / scale) + reach)
    begin, stop = tf.cast(start, tf.int32), tf.cast(end, tf.int32)
    window = image[begin[0] : stop[0], begin[1] : stop[1]]
    return tf.raw_ops.ScaleAndTranslate(
        images=window[tf.newaxis], size=[size, size], scale=scale,
        translation=start * scale - offset, kernel_type="triangle", antialias=True,
    )[0]


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


def cifar_train_augment_batch(images, seed):
    """Paper section 4.2 on a whole NHWC batch: pad 4 pixels, a random crop
    back to size and a random horizontal flip, each image its own, in a few
    gathers of padded rows and columns. `seed`: shape [2], stateless draws."""
    n, size = tf.shape(images)[0], tf.shape(images)[1]
    pad = CIFAR_PAD
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    offsets = tf.random.stateless_uniform([n, 2], seed, 0, 2 * pad + 1, dtype=tf.int32)
    flip = tf.random.stateless_uniform([n], seed + 1) < 0.5
    window = tf.range(size)[None]
    rows = offsets[:, :1] + window
    cols = offsets[:, 1:] + window
    cols = tf.where(flip[:, None], tf.reverse(cols, [1]), cols)  # a flip reads columns backwards
    images = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(images, cols, axis=2, batch_dims=1)


@dataclasses.dataclass
class EvalPreprocessing:
    """How a model's inputs are made from a decoded RGB image, saved beside
    the model (`preprocessing.json`) so that export needs nothing else.

    kind "cifar": resize to `image_size` if needed, subtract `mean_image`
    (the per-pixel mean of the training split, paper section 4.2).
    kind "imagenet": shorter side to 256/224 * image_size, centre crop
    (`eval_center_crop`: only the crop's window is resized), keras.applications
    normalization.
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
        if self.kind == "imagenet":
            return eval_center_crop(image, self.image_size)
        image = tf.cast(image, tf.float32)
        size = self.image_size
        shape = tf.shape(image)
        # The training images are already at size: leave them bit-exact.
        return tf.cond(
            tf.logical_and(shape[0] == size, shape[1] == size),
            lambda: image,
            lambda: tf.image.resize(image, [size, size], antialias=True),
        )

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


# ImageNet training recipes. They take a per-example `seed` (shape [2]
# integers, e.g. from tf.data.Dataset.random) and use stateless random ops, so
# that augmentation is reproducible and independent of map parallelism.

TRAIN_RECIPES = ("scale", "inception")
# Paper section 3.4: shorter side sampled uniformly in [256, 480] for a 224 crop.
SCALE_RANGE = (256, 480)
# Inception-style random-resized crop (Szegedy et al., 2015).
INCEPTION_AREA_RANGE = (0.08, 1.0)
INCEPTION_ASPECT_RANGE = (3 / 4, 4 / 3)
# The paper's colour augmentation is AlexNet's [21] PCA lighting noise; these
# are the ImageNet RGB eigenvalues/vectors (pixels in 0..1) fb.resnet.torch uses.
PCA_STDDEV = 0.1
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009),
              (-0.5808, -0.0045, -0.8140),
              (-0.5836, -0.6948, 0.4203))


def scale_crop_window(shape, seed, image_size=224, scale_range=SCALE_RANGE):
    """The paper's scale augmentation as a window of the original image.

    Resizing the shorter side to S ~ U[256, 480] and cropping image_size
    pixels is cropping a square of side image_size * shorter / S at a random
    place and resizing it: only that window needs decoding. The range scales
    with image_size (256/224 to 480/224 of it). Returns [top, left, h, w]."""
    lo, hi = (round(s * image_size / 224) for s in scale_range)
    seeds = tf.random.experimental.stateless_split(seed, 3)
    h, w = shape[0], shape[1]
    scale = tf.random.stateless_uniform([], seeds[0], lo, hi + 1, dtype=tf.int32)
    side = tf.maximum(image_size * tf.minimum(h, w) // scale, 1)
    top = tf.random.stateless_uniform([], seeds[1], 0, h - side + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], seeds[2], 0, w - side + 1, dtype=tf.int32)
    return tf.stack([top, left, side, side])


def inception_crop_window(shape, seed, area_range=INCEPTION_AREA_RANGE,
                          aspect_range=INCEPTION_ASPECT_RANGE):
    """Inception-style random-resized crop: 8%-100% of the area, aspect 3/4-4/3
    (the whole image when 10 tries fail). Returns [top, left, h, w]."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.stack([shape[0], shape[1], 3]),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        seed=seed,
        min_object_covered=0.1,
        aspect_ratio_range=aspect_range,
        area_range=area_range,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return tf.stack([begin[0], begin[1], size[0], size[1]])


def crop_window(recipe, shape, seed, image_size):
    """The crop window of a training recipe ("scale" or "inception")."""
    check_choice("recipe", recipe, TRAIN_RECIPES)
    if recipe == "scale":
        return scale_crop_window(shape, seed, image_size)
    return inception_crop_window(shape, seed)


def decode_window(image_bytes, window_fn):
    """Decodes only the window `window_fn(shape)` of a JPEG (the header gives
    the shape, tf.image.decode_and_crop_jpeg the pixels); other formats are
    decoded whole and cropped. uint8 HWC."""

    def jpeg():
        window = window_fn(tf.image.extract_jpeg_shape(image_bytes))
        return tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)

    def other():
        image = decode_image(image_bytes)
        return crop_to_window(image, window_fn(tf.shape(image)))

    image = tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)
    image.set_shape([None, None, 3])
    return image


def crop_to_window(image, window):
    return image[window[0] : window[0] + window[2], window[1] : window[1] + window[3]]


def pca_lighting(image, seed, stddev=PCA_STDDEV):
    """AlexNet's colour augmentation: add a random multiple of the ImageNet
    RGB principal components (image RGB in 0..255)."""
    alpha = tf.random.stateless_normal([3], seed, stddev=stddev)
    eigvec = tf.constant(PCA_EIGVEC, tf.float32)
    rgb = tf.linalg.matvec(eigvec, alpha * tf.constant(PCA_EIGVAL, tf.float32)) * 255.0
    return image + rgb


def finish_train_crop(crop, seed, image_size=224, color_augment=False):
    """A training crop (any size, uint8 or float RGB) to normalized model
    input: resize to image_size (as the eval path resizes), random flip,
    optional PCA lighting, ImageNet normalization."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    image = tf.image.resize(tf.cast(crop, tf.float32), [image_size, image_size],
                            method="bilinear", antialias=True)
    image = tf.image.stateless_random_flip_left_right(image, seeds[0])
    if color_augment:
        image = pca_lighting(image, seeds[1])
    return imagenet_normalize(image)


def imagenet_train_preprocess(image_bytes, seed, image_size=224, recipe="scale",
                              color_augment=False):
    """ImageNet training view of an encoded image, decoding only its crop
    window: recipe "scale" (the paper's, section 3.4) or "inception"."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    crop = decode_window(image_bytes,
                         lambda shape: crop_window(recipe, shape, seeds[0], image_size))
    return finish_train_crop(crop, seeds[1], image_size, color_augment)


def imagenet_train_preprocess_image(image, seed, image_size=224, recipe="scale",
                                    color_augment=False):
    """As imagenet_train_preprocess, for an already decoded uint8 image (the
    decoded-image cache)."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    window = crop_window(recipe, tf.shape(image), seeds[0], image_size)
    return finish_train_crop(crop_to_window(image, window), seeds[1], image_size, color_augment)


def ten_crop_views(preprocessing, image):
    """The paper's 10-crop testing ([21]): the eval resize (shorter side
    256/224 * size), its central square, then four corner and centre crops
    and their flips, normalized: (10, size, size, 3)."""
    if preprocessing.kind != "imagenet":
        raise ValueError("10-crop testing is defined for kind='imagenet' preprocessing")
    size = preprocessing.image_size
    side = round(size * EVAL_RESIZE_RATIO)
    image = center_crop(resize_shorter_side(tf.cast(image, tf.float32), side), side)
    return preprocessing.normalize(ten_crops(image, size))
