"""CIFAR-10 from its local forms, held in memory (it is 180 MB decoded):
the python pickle batches, the binary batches, or an image tree in a folder
or a .tar(.gz), such as ../shared/datasets/cifar10-jpeg.tar.gz."""

import os
import pickle

import numpy as np
import tensorflow as tf
from absl import logging

from keras_resnet import cifar_utils
from keras_resnet.preprocessing import EvalPreprocessing, cifar_train_augment_batch, decode_image
from keras_resnet.trainers.data import array_cache, image_tree
from keras_resnet.trainers.data.pipeline import (
    AUTOTUNE, Dataset, InputOptions, batches_before, finish, hold_out, map_encoded,
    per_replica_batch, shard, shuffle_seed, with_options,
)

CLASS_NAMES = list(cifar_utils.CLASS_NAMES)
IMAGE_SHAPE = (32, 32, 3)
VALIDATION_SIZE = 5000  # the paper's 45k/5k split (section 4.2)
LOCAL_FORMS = (
    "cifar-10-batches-py/ (python pickle batches), cifar-10-batches-bin/ "
    "(binary batches), or a train/<class>/*.jpg|png, test/<class>/... tree in "
    "a folder or a .tar/.tar.gz (e.g. ../shared/datasets/cifar10-jpeg.tar.gz)"
)


def _check_labels(source, labels, num_classes=10):
    labels = np.asarray(labels, np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise ValueError(
            f"{source}: label {labels[bad[0]]} of example {bad[0]} is outside "
            f"0..{num_classes - 1}"
        )
    return labels


def _read_pickle_batches(folder, split):
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    for name in names:
        path = os.path.join(folder, name)
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            data = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32)
        except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as error:
            raise ValueError(f"{path}: not a CIFAR-10 pickle batch ({error})") from error
        images.append(data.transpose(0, 2, 3, 1))
        labels.append(_check_labels(path, batch[b"labels"]))
    return np.concatenate(images), np.concatenate(labels)


def _read_binary_batches(folder, split):
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    images, labels = [], []
    record = 1 + 32 * 32 * 3
    for name in names:
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            raise ValueError(f"{path}: missing CIFAR-10 binary batch")
        raw = np.fromfile(path, np.uint8)
        if raw.size == 0 or raw.size % record:
            raise ValueError(f"{path}: truncated ({raw.size} bytes is not a multiple of {record})")
        raw = raw.reshape(-1, record)
        labels.append(_check_labels(path, raw[:, 0]))
        images.append(raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return np.concatenate(images), np.concatenate(labels)


def _decode_all(split, skip_corrupt):
    """Decodes a tree split with TensorFlow's decoder (the one serving uses),
    in parallel: (images, labels, names of skipped files). A corrupt file is
    named in the error, or skipped."""
    def decode(data):  # fixed shapes, so that images leave tf.data in batches
        image = decode_image(data)
        shape = tf.shape(image)
        fits = tf.reduce_all(tf.equal(shape, IMAGE_SHAPE))
        image = tf.cond(fits, lambda: tf.reshape(image, IMAGE_SHAPE),
                        lambda: tf.zeros(IMAGE_SHAPE, tf.uint8))
        return image, shape

    fallback = (tf.zeros(IMAGE_SHAPE, tf.uint8), tf.zeros([3], tf.int32))
    decoded = map_encoded(split, decode, fallback, batch=512)
    images, labels, skipped = [], [], []
    for name, label, ((image, shape), ok) in zip(split.names, split.labels, decoded):
        if not ok:
            if not skip_corrupt:
                raise ValueError(
                    f"{name}: corrupt or truncated image (TensorFlow cannot decode it); "
                    "pass --skip_corrupt to skip such files"
                )
            skipped.append(name)
            continue
        if tuple(shape) != IMAGE_SHAPE:
            raise ValueError(f"{name}: image of shape {tuple(shape)}; CIFAR-10 images are "
                             f"{IMAGE_SHAPE}")
        images.append(image)
        labels.append(label)
    if not images:
        raise ValueError(f"no readable image among {len(split.names)}")
    return np.stack(images), np.asarray(labels, np.int64), np.array(skipped, str)


def _read_tree(data_dir, split, skip_corrupt):
    tree = image_tree.read_split(data_dir, split)
    if tree.class_names != CLASS_NAMES:
        raise ValueError(
            f"{data_dir}: class folders {tree.class_names} are not CIFAR-10's {CLASS_NAMES}"
        )
    return _decode_all(tree, skip_corrupt)


def load_arrays(data_dir, split, skip_corrupt=False):
    """(images uint8 NHWC, labels int64) of 'train' or 'test' from any local
    form. An archive's decoded arrays are cached (see array_cache): a rerun
    reads them back instead of decoding 60k JPEGs again."""
    if data_dir is None or not os.path.exists(data_dir):
        raise ValueError(f"data_dir={data_dir!r} does not exist; CIFAR-10 is read from {LOCAL_FORMS}")
    for sub, reader in (("cifar-10-batches-py", _read_pickle_batches),
                        ("cifar-10-batches-bin", _read_binary_batches)):
        for folder in (data_dir, os.path.join(data_dir, sub)):
            if os.path.basename(os.path.normpath(folder)) == sub and os.path.isdir(folder):
                return reader(folder, split)
    if image_tree.is_tar(data_dir):
        images, labels, skipped = array_cache.cached(
            data_dir, f"cifar10-{split}", ("images", "labels", "skipped"),
            lambda: _read_tree(data_dir, split, skip_corrupt),
            split=split, skip_corrupt=skip_corrupt)
    else:
        images, labels, skipped = _read_tree(data_dir, split, skip_corrupt)
    if len(skipped):
        logging.warning("Skipped %d corrupt images, first: %s", len(skipped), skipped[0])
    return images, labels


def mean_image(images):
    """The per-pixel mean of the uint8 training images (paper section 4.2).
    Their integer sums are exact, so this is the float64 mean bit for bit,
    without a float64 copy of every image (1.2 GB and 10 s for CIFAR-10's)."""
    if images.dtype != np.uint8:
        raise TypeError(f"mean_image takes uint8 images, not {images.dtype}")
    total = images.sum(axis=0, dtype=np.int64)
    return (total.astype(np.float64) / len(images)).astype(np.float32)


def in_memory_dataset(name, class_names, train, test, preprocessing, options):
    """A Dataset over (images, labels) arrays: cached by construction."""

    def normalize(image, label):
        return preprocessing.normalize(image), label

    def augment(seed, batch):
        images, labels = batch
        return cifar_train_augment_batch(preprocessing.normalize(images), seed), labels

    def build_train(batch_size, input_context=None, start_step=0):
        ds = shard(tf.data.Dataset.from_tensor_slices(train), input_context)
        # Each worker its own order and crops; pipeline 0 keeps options.seed.
        seed = shuffle_seed(options, input_context)
        # Files come sorted by class: only a full shuffle mixes them.
        ds = ds.shuffle(len(train[1]), seed=seed).repeat()
        ds = ds.batch(per_replica_batch(batch_size, input_context), drop_remainder=True)
        # Augmenting whole batches costs a few ops per batch, not per image.
        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        # A resumed run continues the stream (skipped before augmenting: cheap).
        ds = tf.data.Dataset.zip(seeds, ds).skip(batches_before(start_step, input_context))
        ds = ds.map(
            augment, num_parallel_calls=AUTOTUNE, deterministic=options.deterministic)
        return with_options(ds.prefetch(AUTOTUNE), options)

    def build_eval(batch_size, input_context=None):
        ds = shard(tf.data.Dataset.from_tensor_slices(test), input_context)
        return finish(ds, training=False, batch_size=batch_size, map_fn=normalize,
                      options=options, input_context=input_context, num_examples=len(test[1]))

    return Dataset(
        name=name,
        class_names=list(class_names),
        num_train=len(train[1]),
        num_eval=len(test[1]),
        preprocessing=preprocessing,
        train=build_train,
        eval=build_eval,
    )


def cifar10(data_dir, options=InputOptions(), validation_split=False):
    """CIFAR-10 from a local copy. With `validation_split`, a fixed random
    5,000 of the training images (10% of a smaller copy) become the eval set
    and the test split is never read."""
    return from_arrays("cifar10", CLASS_NAMES, load_arrays(data_dir, "train", options.skip_corrupt),
                       lambda: load_arrays(data_dir, "test", options.skip_corrupt),
                       options, validation_split)


def from_arrays(name, class_names, train, load_test, options, validation_split):
    """The CIFAR recipe over in-memory (images, labels): the train split's
    mean image, pad-crop-flip training. `load_test()` gives the test arrays;
    with `validation_split` a fixed random 10% of train, at most the paper's
    5,000, is held out instead."""
    images, labels = train
    if validation_split:
        kept, held = hold_out(name, len(labels), at_most=VALIDATION_SIZE)
        train = images[kept], labels[kept]
        test = images[held], labels[held]
    else:
        test = load_test()
    preprocessing = EvalPreprocessing("cifar", images.shape[1], mean_image(train[0]))
    return in_memory_dataset(name, class_names, train, test, preprocessing, options)
