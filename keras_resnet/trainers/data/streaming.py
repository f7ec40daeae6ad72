"""Image datasets streamed as encoded images (files, a tar held in memory,
TFRecord shards, TFDS) and decoded in parallel maps with the ImageNet recipes
of keras_resnet.preprocessing: training decodes only its crop window; small
datasets keep their decoded images in a cache instead.

A source gives one split as (payload, label, name, problem) elements; the
payload becomes image bytes inside a guard, so a corrupt file or record is
reported by name (`BadExamples`) instead of failing without one.
"""

import dataclasses
import os
from typing import Callable

import numpy as np
import tensorflow as tf
from absl import logging

from keras_resnet import preprocessing as prep
from keras_resnet.trainers.data.pipeline import (AUTOTUNE, BadExamples, Dataset, batch_and_prefetch,
                                    batches_before, eval_steps, guarded, per_replica_batch, shard,
                                    shuffle_seed, with_seeds)

# Decoded images of a split up to this size, and up to half the memory
# available, are cached in memory (--cache).
CACHE_BYTES = 2 << 30
# Images whose headers estimate a split's decoded size.
SIZE_SAMPLE = 64
DEFAULT_IMAGE_SIZE = 224
UNREADABLE = "unreadable: corrupt or truncated image or record"


def _identity(payload, label):
    return payload, label


@dataclasses.dataclass
class Source:
    """One split as encoded examples.

    `records(input_context, shuffle, seed, even=False)`: a one-pass
    tf.data.Dataset of (payload, label, name, problem) strings/int64, this
    input pipeline's shard, shuffled when `shuffle`; with `even`, shares that
    differ by one example at most (eval pads every worker to the same steps).
    `unpack(payload, label)`: (encoded image, 0-based label); it runs guarded,
    so it may read a file or parse a record. Labels are shown in messages
    `label_offset`-based (1 for ImageNet records). `sample(k)`: records of k
    examples spread over the split (default: the first k).
    """

    count: int
    records: Callable
    unpack: Callable = _identity
    label_offset: int = 0
    approximate_count: bool = False
    sample: Callable = None


def list_source(labels, names, paths=None, contents=None):
    """Examples listed in memory: image files by path, or their encoded bytes
    (a tar read into memory). Sharded and shuffled per file."""
    payloads = paths if paths is not None else contents

    def records(input_context, shuffle, seed, even=False):
        del even  # sharded per example: even already
        ds = tf.data.Dataset.from_tensor_slices((payloads, tf.constant(labels, tf.int64), names))
        ds = shard(ds, input_context)
        if shuffle:
            ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
        return ds.map(lambda payload, label, name: (payload, label, name, ""))

    def sample(k):
        """k examples at random: the list is sorted by class."""
        picked = np.sort(np.random.default_rng(0).choice(len(labels), min(k, len(labels)),
                                                         replace=False))
        ds = tf.data.Dataset.from_tensor_slices(
            ([payloads[i] for i in picked], tf.constant([labels[i] for i in picked], tf.int64),
             [names[i] for i in picked]))
        return ds.map(lambda payload, label, name: (payload, label, name, ""))

    def read(path, label):
        return tf.io.read_file(path), label

    return Source(len(labels), records, read if paths is not None else _identity, sample=sample)


def decoded_size(source):
    """Bytes the split takes decoded, estimated from the headers of a sample
    of its images (a split's first image may be far from typical); None
    where no sampled image can be read: no cache then."""
    sample = (source.sample(SIZE_SAMPLE) if source.sample
              else source.records(None, False, None).take(SIZE_SAMPLE))
    pixels = []
    for payload, label, _, _ in sample:
        try:
            image_bytes, _ = source.unpack(payload, label)
            if tf.io.is_jpeg(image_bytes):
                shape = tf.image.extract_jpeg_shape(image_bytes)
            else:
                shape = tf.shape(prep.decode_image(image_bytes))
        except tf.errors.OpError:
            continue
        pixels.append(int(shape[0]) * int(shape[1]))
    if not pixels:
        return None
    return round(source.count * np.mean(pixels) * 3)


def available_memory():
    """Bytes of memory the system can still give (MemAvailable), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


class ImagePipelines:
    """The train/eval/10-crop pipelines of one streamed dataset."""

    def __init__(self, train, test, num_classes, options, image_size, cache):
        self.sources = {"train": train, "test": test}
        self.num_classes = num_classes
        self.options = options
        self.image_size = image_size
        self.cache = cache
        self.preprocessing = prep.EvalPreprocessing("imagenet", image_size)
        self.bad = BadExamples(options.skip_corrupt)

    def _checked(self, ds, source, fn, fallback, seeded=False):
        """(payload, label, name, problem)[, seed] -> (fn(image[, seed]), label),
        with bad examples reported by name and (with skip_corrupt) dropped."""
        num_classes, offset = self.num_classes, source.label_offset

        def work(payload, label, *seed):
            image_bytes, label = source.unpack(payload, label)
            return fn(image_bytes, *seed), tf.cast(label, tf.int64)

        def apply(record, *seed):
            payload, label, name, problem = record
            (out, label), ok = guarded(work, (payload, label, *seed),
                                       (fallback, tf.constant(-1, tf.int64)))
            label_problem = tf.cond(
                tf.logical_and(label >= 0, label < num_classes),
                lambda: tf.constant(""),
                lambda: tf.strings.format("label {} outside {}..{}",
                                          (label + offset, offset, num_classes - 1 + offset)),
            )
            found = tf.where(ok, label_problem, UNREADABLE)
            problem = tf.where(tf.equal(problem, ""), found, problem)
            return out, label, name, problem

        if seeded:
            ds = ds.map(lambda record, seed: apply(record, seed), num_parallel_calls=AUTOTUNE,
                        deterministic=self.options.deterministic)
        else:
            ds = ds.map(lambda *record: apply(record), num_parallel_calls=AUTOTUNE,
                        deterministic=self.options.deterministic)
        ds = ds.filter(lambda out, label, name, problem: self.bad.keep(name, problem))
        return ds.map(lambda out, label, name, problem: (out, label))

    def _decoded(self, split, input_context):
        """This pipeline's shard of a split, decoded whole and cached."""
        records = self.sources[split].records(input_context, False, None, even=split == "test")
        decoded = self._checked(records, self.sources[split], prep.decode_image,
                                tf.zeros([1, 1, 3], tf.uint8))
        return decoded.cache()

    def train(self, batch_size, input_context=None, start_step=0):
        options, size = self.options, self.image_size
        # A resumed run continues the stream: skipped before decoding, cheaply.
        skip = batches_before(start_step, input_context) * per_replica_batch(batch_size, input_context)
        recipe, color = options.train_preprocessing, options.color_augment
        seed = shuffle_seed(options, input_context)
        source = self.sources["train"]
        if self.cache:
            ds = self._decoded("train", input_context)
            ds = ds.shuffle(source.count, seed=seed, reshuffle_each_iteration=True).repeat()
            ds = with_seeds(ds, seed).skip(skip).map(
                lambda example, s: (prep.imagenet_train_preprocess_image(
                    example[0], s, size, recipe, color), example[1]),
                num_parallel_calls=AUTOTUNE, deterministic=options.deterministic)
        else:
            ds = with_seeds(source.records(input_context, True, seed).repeat(), seed).skip(skip)
            ds = self._checked(
                ds, source,
                lambda image_bytes, s: prep.imagenet_train_preprocess(
                    whole(image_bytes), s, size, recipe, color),
                tf.zeros([size, size, 3]), seeded=True)
        return batch_and_prefetch(ds, training=True, batch_size=batch_size, options=options,
                                  input_context=input_context)

    def eval(self, batch_size, input_context=None):
        size, test = self.image_size, self.sources["test"]
        if self.cache:
            ds = self._decoded("test", input_context).map(
                lambda image, label: (self.preprocessing(image), label),
                num_parallel_calls=AUTOTUNE, deterministic=self.options.deterministic)
        else:
            ds = self._checked(test.records(input_context, False, None, even=True), test,
                               lambda image_bytes: self.preprocessing(prep.decode_image(image_bytes)),
                               tf.zeros([size, size, 3]))
        ds = ds.map(lambda image, label: (tf.ensure_shape(image, [size, size, 3]), label))
        return batch_and_prefetch(ds, training=False, batch_size=batch_size, options=self.options,
                                  input_context=input_context, num_examples=test.count)

    def eval_ten_crop(self, batch_size, input_context=None):
        size, test = self.image_size, self.sources["test"]
        ds = self._checked(
            test.records(input_context, False, None, even=True), test,
            lambda image_bytes: tf.ensure_shape(
                prep.ten_crop_views(self.preprocessing, prep.decode_image(image_bytes)),
                [10, size, size, 3]),
            tf.zeros([10, size, size, 3]))
        return batch_and_prefetch(ds, training=False, batch_size=batch_size, options=self.options,
                                  input_context=input_context, num_examples=test.count)


def whole(image_bytes):
    """image_bytes, once known whole: training decodes only a crop window,
    which a truncated JPEG passes while the crop misses the damage. A JPEG
    ending in its end marker (FFD9) is whole; any other is decoded in full,
    which fails (inside `guarded`) where it is cut short."""
    ends = tf.equal(tf.strings.substr(image_bytes, -2, 2), b"\xff\xd9")
    trusted = tf.logical_or(ends, tf.logical_not(tf.io.is_jpeg(image_bytes)))
    checked = tf.cond(trusted, lambda: tf.constant(True),
                      lambda: tf.size(prep.decode_image(image_bytes)) >= 0)
    with tf.control_dependencies([checked]):
        return tf.identity(image_bytes)


def image_dataset(name, class_names, train, test, options):
    """A Dataset streaming `train` and `test` Sources with the ImageNet recipes
    at options.image_size (default 224)."""
    size = options.image_size or DEFAULT_IMAGE_SIZE
    prep.check_choice("train_preprocessing", options.train_preprocessing, prep.TRAIN_RECIPES)
    cache = False
    if options.cache:
        sizes = [decoded_size(train), decoded_size(test)]
        memory = available_memory()
        limit = CACHE_BYTES if memory is None else min(CACHE_BYTES, memory // 2)
        cache = None not in sizes and sum(sizes) <= limit
        logging.info("%s: decoded images take about %s MB: %s", name,
                     "?" if None in sizes else round(sum(sizes) / 2**20),
                     "cached in memory" if cache else "streamed (too large to cache)")
    for split, source in (("train", train), ("eval", test)):
        if source.approximate_count:
            logging.warning("%s: the %s split's size (%d) is an estimate", name, split, source.count)
    pipelines = ImagePipelines(train, test, len(class_names), options, size, cache)
    return Dataset(
        name=name,
        class_names=list(class_names),
        num_train=train.count,
        num_eval=test.count,
        preprocessing=pipelines.preprocessing,
        train=pipelines.train,
        eval=pipelines.eval,
        eval_ten_crop=pipelines.eval_ten_crop if options.ten_crop else None,
    )


def evaluate_ten_crop(model, dataset, batch_size, strategy=None):
    """The paper's 10-crop testing: top-1 accuracy of the model's outputs
    averaged over each image's 10 views (dataset built with ten_crop).

    Distributed like eval: each worker reads its share, each replica scores
    the 10 views of its per-replica batch (10x that batch in one call), all
    workers run the same steps; the padding weighs 0."""
    strategy = strategy or tf.distribute.get_strategy()
    data = strategy.distribute_datasets_from_function(
        lambda ctx: dataset.eval_ten_crop(batch_size, ctx))

    def replica_step(views, labels, weights):
        scores = model(tf.reshape(views, [-1, *views.shape[2:]]), training=False)
        scores = tf.reduce_mean(tf.reshape(scores, [tf.shape(views)[0], 10, -1]), axis=1)
        hits = tf.cast(tf.equal(tf.argmax(scores, -1), labels), tf.float32)
        return tf.reduce_sum(hits * weights), tf.reduce_sum(weights)

    @tf.function
    def step(iterator):
        sums = strategy.run(replica_step, args=next(iterator))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in sums]

    iterator = iter(data)
    correct = total = 0.0
    for _ in range(eval_steps(dataset.num_eval, batch_size)):
        hits, weights = step(iterator)
        correct += float(hits)
        total += float(weights)
    return correct / total if total else float("nan")
