"""tf.data plumbing shared by every source: sharding, shuffling, batching,
prefetch and the options that keep a training step from waiting on input."""

import dataclasses
import threading
from typing import Callable

import numpy as np
import tensorflow as tf
from absl import logging

from keras_resnet.preprocessing import EvalPreprocessing

AUTOTUNE = tf.data.AUTOTUNE
# --validation_split on streamed datasets holds out this part of train.
VALIDATION_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class InputOptions:
    """How the pipelines run; the trainer fills it from its flags."""

    shuffle_buffer: int = 10_000
    cache: bool = True
    deterministic: bool = False
    private_threadpool_size: int = 0
    seed: int = None
    skip_corrupt: bool = False
    # Streaming (ImageNet-style) datasets; None: the dataset's own size.
    image_size: int = None
    train_preprocessing: str = "scale"  # or "inception"
    color_augment: bool = False
    ten_crop: bool = False
    tfds_manual_dir: str = None


@dataclasses.dataclass
class Dataset:
    """A classification dataset ready for training: `train(batch, ctx)` and
    `eval(batch, ctx)` build per-replica batched tf.data pipelines."""

    name: str
    class_names: list
    num_train: int
    num_eval: int
    preprocessing: EvalPreprocessing
    train: Callable
    eval: Callable
    # (batch, ctx) -> ((batch, 10, size, size, 3) views, labels): the paper's
    # 10-crop testing, for ImageNet-style datasets built with ten_crop.
    eval_ten_crop: Callable = None

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def image_shape(self):
        size = self.preprocessing.image_size
        return (size, size, 3)


def per_replica_batch(global_batch, input_context):
    if input_context is None:
        return global_batch
    return input_context.get_per_replica_batch_size(global_batch)


def batches_before(start_step, input_context):
    """Per-replica batches this pipeline gave in the first `start_step`
    global steps: what a resumed run skips to continue the same stream."""
    if input_context is None:
        return start_step
    return start_step * input_context.num_replicas_in_sync // input_context.num_input_pipelines


def shard(dataset, input_context):
    """Each input pipeline (worker) reads a disjoint part of the data."""
    if input_context is None or input_context.num_input_pipelines == 1:
        return dataset
    return dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)


def finish(dataset, *, training, batch_size, map_fn, options, input_context,
           shuffle_buffer=None):
    """Shuffle, map, batch, prefetch: the tail every source shares."""
    if training:
        buffer = shuffle_buffer or options.shuffle_buffer
        dataset = dataset.shuffle(buffer, seed=options.seed).repeat()
    dataset = dataset.map(map_fn, num_parallel_calls=AUTOTUNE, deterministic=options.deterministic)
    return batch_and_prefetch(dataset, training=training, batch_size=batch_size,
                              options=options, input_context=input_context)


def batch_and_prefetch(dataset, *, training, batch_size, options, input_context):
    """Whole per-replica batches for training, eval padded to full steps,
    prefetch, options: finish()'s tail, also for sources that map on their own."""
    if training:
        dataset = dataset.batch(per_replica_batch(batch_size, input_context), drop_remainder=True)
    else:
        dataset = pad_to_full_steps(dataset, batch_size, input_context)
    return with_options(dataset.prefetch(AUTOTUNE), options)


def pad_to_full_steps(dataset, batch_size, input_context):
    """Eval batches as (image, label, weight): every step gives every replica
    a full batch, the padding weighted 0, so accuracy counts each real
    example once. (A replica handed an empty batch fails in oneDNN's BN.)"""
    replica_batch = per_replica_batch(batch_size, input_context)
    replicas = 1
    if input_context is not None:
        replicas = input_context.num_replicas_in_sync // input_context.num_input_pipelines
    step = replica_batch * replicas
    dataset = dataset.map(lambda x, y: (x, y, tf.constant(1.0)))
    padding = dataset.take(1).map(lambda x, y, w: (tf.zeros_like(x), tf.zeros_like(y), 0.0))
    dataset = dataset.concatenate(padding.repeat(step - 1))
    return dataset.batch(step, drop_remainder=True).unbatch().batch(replica_batch)


def followed_by_padding(eval_dataset):
    """An eval pipeline's batches, then weight-0 batches without end: the
    trainer runs a fixed number of eval steps, and a split that turns out
    shorter than counted (images skipped as corrupt) adds only examples
    that count for nothing."""
    if len(eval_dataset.element_spec) != 3:  # no weights: synthetic data, endless already
        return eval_dataset
    padding = eval_dataset.take(1).map(
        lambda x, y, w: (tf.zeros_like(x), tf.zeros_like(y), tf.zeros_like(w)))
    return eval_dataset.concatenate(padding.repeat())


def with_options(dataset, options):
    tf_options = tf.data.Options()
    tf_options.deterministic = options.deterministic
    if options.private_threadpool_size:
        tf_options.threading.private_threadpool_size = options.private_threadpool_size
    # Sharding is done explicitly per input pipeline; no auto-shard on top.
    tf_options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(tf_options)


def shuffle_seed(options, input_context):
    """options.seed, made different for each input pipeline (worker)."""
    if options.seed is None:
        return None
    pipeline = input_context.input_pipeline_id if input_context is not None else 0
    return options.seed + 7919 * pipeline


def with_seeds(dataset, seed):
    """Pairs each element with its own [2] seed for stateless augmentation:
    reproducible with a seed, whatever the map parallelism."""
    return tf.data.Dataset.zip((dataset, tf.data.Dataset.random(seed=seed).batch(2)))


def map_encoded(split, fn, fallback, batch=1):
    """fn(encoded image) over a tree split's images (in memory or by path),
    in parallel and in order: numpy (output, ok) pairs, ok False where the
    image cannot be read or decoded. With fixed-shape outputs, `batch` > 1
    moves them out of tf.data in batches (much faster for small images)."""
    from_paths = split.contents is None
    payloads = split.paths if from_paths else split.contents

    def apply(payload):
        return fn(tf.io.read_file(payload) if from_paths else payload)

    dataset = tf.data.Dataset.from_tensor_slices(payloads).map(
        lambda payload: guarded(apply, (payload,), fallback),
        num_parallel_calls=AUTOTUNE, deterministic=True)
    for outputs, oks in dataset.batch(batch).as_numpy_iterator():
        for i, ok in enumerate(oks):
            yield tf.nest.map_structure(lambda x: x[i], outputs), ok  # noqa: B023


def guarded(fn, args, fallback):
    """(fn(*args), True), or (fallback, False) where fn fails.

    TensorFlow's decoders and record readers raise errors that name no file;
    this turns a failure into a flag that the pipeline reports by name
    (`BadExamples`), without stopping a parallel map."""
    inner = tf.data.Dataset.from_tensors(args).map(lambda *a: (fn(*a), True)).ignore_errors()
    inner = inner.concatenate(tf.data.Dataset.from_tensors((fallback, False)))
    return inner.take(1).get_single_element()


class BadExamples:
    """Bad input met while a pipeline runs (a corrupt or truncated image or
    record, a label outside the class range): an error naming it, or, with
    skip_corrupt, skipped and counted in the log (once per example, however
    many epochs meet it). Never a silent drop."""

    def __init__(self, skip):
        self.skip = skip
        self.skipped = set()
        self._lock = threading.Lock()

    @property
    def count(self):
        return len(self.skipped)

    def report(self, name, problem):
        """Python side: raise, or log and count (a py_function runs it)."""
        name = name.numpy().decode("utf-8", "replace")
        problem = problem.numpy().decode("utf-8", "replace")
        if not self.skip:
            raise ValueError(f"{name}: {problem}; pass --skip_corrupt to skip (and count) "
                             "bad examples")
        with self._lock:
            new = name not in self.skipped
            self.skipped.add(name)
            count = len(self.skipped)
        if new:
            logging.warning("Skipped bad example #%d: %s: %s", count, name, problem)
        return False

    def keep(self, name, problem):
        """tf.data filter predicate: True for a good example (problem == "")."""
        return tf.cond(
            tf.equal(problem, ""),
            lambda: tf.constant(True),
            lambda: tf.reshape(tf.py_function(self.report, [name, problem], tf.bool), []),
        )


def hold_out(name, count, at_most=None):
    """(kept, held) indices of `count` training examples for --validation_split:
    a fixed random VALIDATION_FRACTION (at most `at_most`) held out, so that a
    small dataset keeps most of its images. Logged: how many of how many.
    `kept` is sorted (files keep their order), `held` in the drawn order."""
    if count < 2:
        raise ValueError(f"{name}: --validation_split needs at least 2 training images to "
                         f"hold some out; the training split has {count}")
    held = max(1, round(count * VALIDATION_FRACTION))
    if at_most is not None:
        held = min(held, at_most)
    order = np.random.default_rng(0).permutation(count)
    logging.info("%s: --validation_split holds out %d of the %d training images "
                 "(evaluated on them; %d left to train on)", name, held, count, count - held)
    return np.sort(order[held:]), order[:held]
