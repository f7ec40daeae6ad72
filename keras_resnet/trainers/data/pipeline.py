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
           shuffle_buffer=None, num_examples=None):
    """Shuffle, map, batch, prefetch: the tail every source shares."""
    if training:
        buffer = shuffle_buffer or options.shuffle_buffer
        dataset = dataset.shuffle(buffer, seed=shuffle_seed(options, input_context)).repeat()
    dataset = dataset.map(map_fn, num_parallel_calls=AUTOTUNE, deterministic=options.deterministic)
    return batch_and_prefetch(dataset, training=training, batch_size=batch_size,
                              options=options, input_context=input_context,
                              num_examples=num_examples)


def batch_and_prefetch(dataset, *, training, batch_size, options, input_context,
                       num_examples=None):
    """Whole per-replica batches for training, eval padded to full steps
    (`num_examples`: the whole split's), prefetch, options: finish()'s
    tail, also for sources that map on their own."""
    if training:
        dataset = dataset.batch(per_replica_batch(batch_size, input_context), drop_remainder=True)
    else:
        dataset = pad_to_full_steps(dataset, batch_size, input_context, num_examples)
    return with_options(dataset.prefetch(AUTOTUNE), options)


def eval_steps(num_examples, global_batch):
    """Steps of one pass over an eval split, the same on every worker."""
    return max(1, -(-num_examples // global_batch))


def pad_to_full_steps(dataset, batch_size, input_context, num_examples):
    """Eval batches as (image, label, weight): `eval_steps` of them on every
    input pipeline, each a full batch for every replica, the padding weighted
    0. Workers run the same steps whatever their share (none included), as
    their collectives need, and accuracy counts each real example once.

    The whole stream is read, so that a bad example at its end still stops
    the run (or is counted as skipped); a split shorter than counted (images
    skipped as corrupt) is padded, examples past an estimated count dropped.
    (A replica handed an empty batch fails in oneDNN's BN.)"""
    replica_batch = per_replica_batch(batch_size, input_context)
    replicas = 1
    if input_context is not None:
        replicas = input_context.num_replicas_in_sync // input_context.num_input_pipelines
    share = eval_steps(num_examples, batch_size) * replica_batch * replicas
    image_spec, label_spec = dataset.element_spec
    if not image_spec.shape.is_fully_defined():
        raise ValueError(f"eval images of shape {image_spec.shape}: padding needs a fixed shape")
    end = tf.data.Dataset.from_tensors((tf.zeros(image_spec.shape, image_spec.dtype),
                                        tf.zeros(label_spec.shape, label_spec.dtype), True))
    dataset = dataset.map(lambda x, y: (x, y, False)).concatenate(end)

    def count(seen, element):  # each example's index; at the end, the examples seen
        return seen + tf.cast(tf.logical_not(element[2]), tf.int64), (*element, seen)

    def expand(x, y, is_end, seen):  # an example, or the padding that fills the share
        copies = tf.where(is_end, tf.maximum(share - seen, 0), tf.cast(seen < share, tf.int64))
        weight = tf.where(is_end, 0.0, 1.0)
        return tf.data.Dataset.from_tensors((x, y, weight)).repeat(copies)

    dataset = dataset.scan(tf.constant(0, tf.int64), count).flat_map(expand)
    return dataset.batch(replica_batch)


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
