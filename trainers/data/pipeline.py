"""tf.data plumbing shared by every source: sharding, shuffling, batching,
prefetch and the options that keep a training step from waiting on input."""

import dataclasses
from typing import Callable

import tensorflow as tf

from keras_resnet.preprocessing import EvalPreprocessing

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class InputOptions:
    """How the pipelines run; the trainer fills it from its flags."""

    shuffle_buffer: int = 10_000
    cache: bool = True
    deterministic: bool = False
    private_threadpool_size: int = 0
    seed: int = None
    skip_corrupt: bool = False


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
    dataset = dataset.batch(per_replica_batch(batch_size, input_context), drop_remainder=training)
    dataset = dataset.prefetch(AUTOTUNE)
    return with_options(dataset, options)


def with_options(dataset, options):
    tf_options = tf.data.Options()
    tf_options.deterministic = options.deterministic
    if options.private_threadpool_size:
        tf_options.threading.private_threadpool_size = options.private_threadpool_size
    # Sharding is done explicitly per input pipeline; no auto-shard on top.
    tf_options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(tf_options)
