"""The ImageNet training recipes (paper's scale augmentation, Inception crop,
PCA lighting) decoding only their crop window, the eval path
(EvalPreprocessing), 10-crop testing, and the CIFAR recipe in the pipeline."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import skimage.data
import tensorflow as tf
from data_fixtures import cifar_arrays, cifar_tree, imagenet_raw, photo_jpegs  # noqa: F401

from keras_resnet import preprocessing as prep
from keras_resnet.trainers.data import InputOptions, load_dataset
from keras_resnet.trainers.data.streaming import evaluate_ten_crop

# Normalized pixels: BGR minus the ImageNet mean.
LOW, HIGH = -max(prep.IMAGENET_MEAN_BGR), 255 - min(prep.IMAGENET_MEAN_BGR)


def seeds(n, start=0):
    return [tf.constant([start + i, 7], tf.int64) for i in range(n)]


def test_scale_window_is_the_papers_224_crop_of_a_256_to_480_resize():
    shape = tf.constant([300, 451, 3])
    windows = np.stack([prep.scale_crop_window(shape, s).numpy() for s in seeds(300)])
    top, left, h, w = windows.T
    assert (h == w).all()
    scales = 224 * 300 / h  # the shorter side this window stands for
    assert scales.min() >= 256 - 2 and scales.max() <= 480 + 2
    assert scales.min() < 280 and scales.max() > 450  # the whole range is drawn
    assert (top >= 0).all() and (top + h <= 300).all() and (left + w <= 451).all()
    # Other sizes scale the range: 128 px crops from a shorter side in [146, 274].
    small = np.stack([prep.scale_crop_window(shape, s, 128).numpy() for s in seeds(100)])
    assert (128 * 300 / small[:, 2]).min() >= 146 - 2


def test_inception_window_area_and_aspect():
    shape = tf.constant([400, 600, 3])
    for seed in seeds(100):
        top, left, h, w = prep.inception_crop_window(shape, seed).numpy()
        area = h * w / (400 * 600)
        assert 0.08 - 0.01 <= area <= 1.0 and top + h <= 400 and left + w <= 600
        if area < 1.0:
            assert 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05


def test_crop_window_decode_equals_decoding_all_then_cropping(photo_jpegs):
    data = photo_jpegs[0][1]
    window = tf.constant([17, 33, 150, 120])
    cropped = prep.decode_window(tf.constant(data), lambda shape: window)
    whole = prep.decode_image(data)
    np.testing.assert_array_equal(cropped.numpy(),
                                  prep.crop_to_window(whole, window).numpy())
    # PNG input: decoded whole, then the same window.
    png = tf.io.encode_png(whole)
    np.testing.assert_array_equal(prep.decode_window(png, lambda shape: window).numpy(),
                                  prep.crop_to_window(whole, window).numpy())


@pytest.mark.parametrize("recipe", prep.TRAIN_RECIPES)
def test_train_views_shapes_ranges_and_reproducibility(photo_jpegs, recipe):
    data = tf.constant(photo_jpegs[1][1])
    views = [prep.imagenet_train_preprocess(data, s, 224, recipe).numpy() for s in seeds(6)]
    for view in views:
        assert view.shape == (224, 224, 3) and view.dtype == np.float32
        assert LOW - 1 <= view.min() and view.max() <= HIGH + 1
    assert len({v.tobytes() for v in views}) == 6  # every seed a different view
    again = prep.imagenet_train_preprocess(data, seeds(1)[0], 224, recipe).numpy()
    np.testing.assert_array_equal(again, views[0])
    # The decoded-image (cache) path gives the same view for the same seed, but
    # for libjpeg's chroma upsampling at a window's edge (a few pixels differ).
    cached = prep.imagenet_train_preprocess_image(prep.decode_image(data), seeds(1)[0], 224,
                                                  recipe).numpy()
    difference = np.abs(cached - views[0])
    assert difference.mean() < 0.1 and (difference > 1e-3).mean() < 0.02


def test_colour_augmentation_shifts_colours_only():
    image = tf.fill([4, 4, 3], 128.0)
    shifted = prep.pca_lighting(image, tf.constant([1, 2], tf.int64)).numpy()
    assert not np.allclose(shifted, 128.0)
    assert np.allclose(shifted, shifted[0, 0])  # one RGB offset for the whole image
    assert np.abs(shifted - 128.0).max() < 40


@pytest.mark.parametrize("rows, cols", [(slice(None), slice(None)), (slice(0, 97), slice(0, 300)),
                                        (slice(None), slice(0, 50)), (slice(0, 1), slice(None))])
def test_eval_crop_is_the_resize_then_crop_it_stands_for(rows, cols):
    side = round(224 * prep.EVAL_RESIZE_RATIO)
    for name in ("chelsea", "astronaut", "coffee", "rocket"):
        image = getattr(skimage.data, name)()[rows, cols]
        whole = prep.resize_shorter_side(tf.cast(image, tf.float32), side)
        np.testing.assert_allclose(prep.eval_center_crop(image, 224).numpy(),
                                   prep.center_crop(whole, 224).numpy(), rtol=0, atol=0.02)


STRIP_MEMORY = """
import numpy as np, skimage.data
from keras_resnet.preprocessing import EvalPreprocessing

def peak_mib():  # this process's own, where ru_maxrss may be its parent's
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) // 1024

preprocessing = EvalPreprocessing("imagenet", 224)
photo = skimage.data.coffee()  # 400 x 600
preprocessing(photo)
before = peak_mib()
preprocessing(np.tile(photo[200:201], (1, 2, 1)))  # a 1 x 1200 strip
print(peak_mib() - before)
"""


def test_eval_view_of_a_strip_costs_its_window_not_the_whole_resize():
    """Resizing a 1 x 1200 strip's shorter side to 256 would take 0.9 GB."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", STRIP_MEMORY], cwd=root, check=True,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert int(done.stdout.split()[-1]) < 50  # MiB of peak RSS added by the strip


def test_ten_crop_views_centre_is_the_eval_view(photo_jpegs):
    preprocessing = prep.EvalPreprocessing("imagenet", 224)
    image = prep.decode_image(photo_jpegs[2][1])
    views = prep.ten_crop_views(preprocessing, image).numpy()
    assert views.shape == (10, 224, 224, 3)
    np.testing.assert_allclose(views[4], preprocessing(image).numpy(), atol=1e-3)
    np.testing.assert_allclose(views[9], views[4][:, ::-1], atol=1e-6)
    with pytest.raises(ValueError, match="imagenet"):
        prep.ten_crop_views(prep.EvalPreprocessing("cifar", 32, np.zeros((32, 32, 3))), image)


@pytest.mark.parametrize("cache, recipe, color", [(False, "scale", True),
                                                  (True, "inception", False)])
def test_streamed_training_pipeline(imagenet_raw, cache, recipe, color):
    options = InputOptions(cache=cache, train_preprocessing=recipe, color_augment=color,
                           image_size=160, seed=5, deterministic=True)
    dataset = load_dataset("imagenet2012", imagenet_raw, options)
    x, y = next(iter(dataset.train(8)))
    assert x.shape == (8, 160, 160, 3) and x.dtype == tf.float32
    assert np.isfinite(x.numpy()).all() and set(y.numpy()) <= {0, 1, 2, 3}
    assert dataset.preprocessing == prep.EvalPreprocessing("imagenet", 160)
    # A seed and deterministic order make the stream reproducible.
    again = next(iter(load_dataset("imagenet2012", imagenet_raw, options).train(8)))
    np.testing.assert_array_equal(again[1].numpy(), y.numpy())
    np.testing.assert_allclose(again[0].numpy(), x.numpy(), atol=1e-4)


def test_ten_crop_evaluation(imagenet_raw):
    dataset = load_dataset("imagenet2012", imagenet_raw, InputOptions(ten_crop=True,
                                                                      image_size=64))
    views, labels, weights = next(iter(dataset.eval_ten_crop(4)))
    assert views.shape == (4, 10, 64, 64, 3) and labels.shape == (4,)
    inputs = keras.Input((64, 64, 3))
    outputs = keras.layers.Dense(4, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(inputs))
    accuracy = evaluate_ten_crop(keras.Model(inputs, outputs), dataset, 4)
    assert 0.0 <= accuracy <= 1.0
    assert load_dataset("imagenet2012", imagenet_raw).eval_ten_crop is None


def test_cifar_training_recipe_pads_crops_flips_around_the_mean(cifar_slice):
    dataset = load_dataset("cifar10", cifar_slice, InputOptions(seed=1))
    mean = dataset.preprocessing.mean_image
    x, _ = next(iter(dataset.train(64)))
    x = x.numpy()
    assert x.shape == (64, 32, 32, 3)
    # Mean-free pixels (then shifted by the crop), padded with 0 after the subtraction.
    assert x.min() >= -mean.max() - 1e-4 and x.max() <= 255 - mean.min() + 1e-4
    padded_rows = (x == 0).all(axis=(2, 3)).any(axis=1)
    assert 0 < padded_rows.sum() < 64


def test_batched_cifar_augmentation_is_a_crop_or_flipped_crop_of_each_padded_image(cifar_arrays):
    images = cifar_arrays["train"][0][::10][:16].astype(np.float32)
    seed = tf.constant([7, 8], tf.int64)
    out = prep.cifar_train_augment_batch(tf.constant(images), seed).numpy()
    assert out.shape == images.shape
    np.testing.assert_array_equal(out, prep.cifar_train_augment_batch(tf.constant(images), seed))
    padded = np.pad(images, [[0, 0], [4, 4], [4, 4], [0, 0]])
    views = set()
    for image, crop in zip(padded, out):
        found = [(r, c, flip) for r in range(9) for c in range(9) for flip in (False, True)
                 if np.array_equal(crop, image[r:r + 32, c:c + 32][:, ::-1] if flip
                                   else image[r:r + 32, c:c + 32])]
        assert found, "not a 32x32 window of the padded image"
        views.add(found[0])
    assert len(views) > 4 and {v[2] for v in views} == {False, True}
