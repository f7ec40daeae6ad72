"""Strategy and precision set-up, so the training loop never asks which
strategy runs it."""

import json
import os
import re

import keras
import tensorflow as tf
from absl import logging


def _split_cpu(num_replicas):
    """Splits the CPU into logical devices; must run before TF starts."""
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_replicas
    )
    return [f"/cpu:{i}" for i in range(num_replicas)]


def _gpus(num_gpus):
    gpus = tf.config.list_logical_devices("GPU")
    if num_gpus is not None:
        if num_gpus > len(gpus):
            raise ValueError(f"--num_gpus={num_gpus}, but only {len(gpus)} GPUs are visible")
        gpus = gpus[:num_gpus]
    return [g.name for g in gpus]


def get_strategy(name, num_gpus=None, num_cpu_replicas=0, tpu=None):
    """A tf.distribute strategy by flag name."""
    if num_cpu_replicas and name not in ("mirrored", "multi_worker_mirrored"):
        raise ValueError(
            f"--num_cpu_replicas={num_cpu_replicas} needs --distribution_strategy="
            "mirrored or multi_worker_mirrored"
        )
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        devices = _gpus(num_gpus) or ["/cpu:0"]
        return tf.distribute.OneDeviceStrategy(devices[0])
    if name == "mirrored":
        devices = _split_cpu(num_cpu_replicas) if num_cpu_replicas else _gpus(num_gpus)
        return tf.distribute.MirroredStrategy(devices or None)
    if name == "multi_worker_mirrored":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--distribution_strategy=multi_worker_mirrored needs TF_CONFIG")
        if num_cpu_replicas:
            _split_cpu(num_cpu_replicas)
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING
        )
        return _reduce_per_tensor(
            tf.distribute.MultiWorkerMirroredStrategy(communication_options=options))
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"--distribution_strategy={name!r} is unknown")


def _reduce_per_tensor(strategy):
    """Keras 3.15 asks MultiWorkerMirroredStrategy for reductions it cannot
    do: a whole (images, labels) batch at once, and scalar metrics along
    axis 0. Reduce one tensor at a time, scalars across replicas only."""
    reduce = strategy.reduce

    def reduce_one(reduce_op, value, axis):
        rank = strategy.experimental_local_results(value)[0].shape.rank
        return reduce(reduce_op, value, axis=None if rank == 0 else axis)

    def reduce_nested(reduce_op, value, axis=None):
        return tf.nest.map_structure(lambda v: reduce_one(reduce_op, v, axis), value)

    strategy.reduce = reduce_nested
    return strategy


def is_chief(strategy):
    """Whether this process writes checkpoints and results (worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:  # a single-worker cluster
        return True
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    chief_type = "chief" if "chief" in cluster else "worker"
    return task_type == chief_type and task_id == 0


# What a collective raises when a peer process is gone.
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError,
               tf.errors.DeadlineExceededError)


def lost_worker_message(error):
    """A one-paragraph account of `error` naming the worker that was lost,
    for multi-worker runs; None when TF_CONFIG names no cluster."""
    workers = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {}).get("worker")
    if not workers:
        return None
    lost = sorted({int(t) for t in re.findall(r"/job:worker/replica:\d+/task:(\d+)",
                                               str(error.message))})
    me = json.loads(os.environ["TF_CONFIG"]).get("task", {}).get("index")
    peers = [f"worker {t} ({workers[t]})" for t in lost if t != me and t < len(workers)]
    message = re.sub(r"\{\{.*?\}\}\s*", "", str(error.message or "")).strip()
    first = message.splitlines()[0] if message else "no detail"
    return (f"Lost {', '.join(peers) or 'a peer worker'} of the cluster {workers}: "
            f"{type(error).__name__}: {first[:300]}. The run stopped at its last "
            "checkpoint; rerun every worker's command to resume from it.")


def set_precision(policy):
    """Sets the Keras dtype policy; float16 gets dynamic loss scaling in compile."""
    if policy == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
        logging.warning("--mixed_precision=mixed_float16 without a GPU: CPUs run float16 "
                        "convolutions in software (160x slower than mixed_bfloat16 on a "
                        "2-core AVX512_BF16 CPU). Use mixed_bfloat16 on CPUs.")
    keras.mixed_precision.set_global_policy(policy)


def check_batch(global_batch, strategy):
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise ValueError(
            f"--batch_size={global_batch} does not divide by the {replicas} replicas; "
            f"use a multiple of {replicas}"
        )


def from_flags(flags):
    """The strategy of the distribution flags, with precision set: the one
    set-up call of every training binary."""
    strategy = get_strategy(
        flags.distribution_strategy, flags.num_gpus, flags.num_cpu_replicas, flags.tpu
    )
    check_batch(flags.batch_size, strategy)
    set_precision(flags.mixed_precision)
    return strategy
