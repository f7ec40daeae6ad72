"""Training and evaluation calls of several steps each, under any strategy.

Keras' own multi-step call (steps_per_execution > 1) watches for the end of
the data with a tf.Optional inside a while loop, which fails under a strategy
with more than one replica (keras-team/keras#19246). The trainer knows its
step counts: the training input repeats forever, and evaluation has a known
number of padded batches. So a fixed-count loop of `strategy.run` needs no
end-of-data test, and one call still runs many steps.
"""

import keras
import tensorflow as tf


def _multi_step(model, step_fn):
    """A tf.function (iterator, steps) that runs `steps` of `step_fn` on
    every replica and returns the model's metrics, reduced over replicas
    and workers (read in cross-replica context)."""
    strategy = model.distribute_strategy
    if model.jit_compile:
        step_fn = tf.function(step_fn, jit_compile=True, reduce_retracing=True)

    @tf.function(reduce_retracing=True)
    def run(iterator, steps):
        for _ in tf.range(steps):
            strategy.run(step_fn, args=(next(iterator),))
        return model.get_metrics_result()

    return run


def install(model):
    """Makes `model.fit` train, and `evaluate` test, through the fixed-count
    loop. Call after compile."""
    train = _multi_step(model, model.train_step)
    steps = tf.constant(model.steps_per_execution)
    model.train_function = lambda iterator: train(iterator, steps)
    model.test_function = _multi_step(model, model.test_step)


def evaluate(model, data, steps):
    """Metrics of the model over `steps` batches of a distributed eval
    dataset, in calls of steps_per_execution; the last call may be shorter.
    `model` went through `install`."""
    model.reset_metrics()
    iterator = iter(data)
    logs = {}
    for done in range(0, steps, model.steps_per_execution):
        logs = model.test_function(iterator, tf.constant(min(model.steps_per_execution, steps - done)))
    return {name: float(keras.ops.convert_to_numpy(value)) for name, value in logs.items()}


def average_statistics(model, variables):
    """Sets every replica's copy of `variables` (BN moving statistics) to
    their mean over all replicas and workers.

    Without sync BN each replica keeps statistics of its own batches, and
    the saved model holds the first copy only: evaluation and checkpoints
    must see one net. A collective: every worker calls it at the same point.
    """
    strategy = model.distribute_strategy
    if strategy.num_replicas_in_sync == 1 or not variables:
        return
    values = [v.value for v in variables]

    @tf.function
    def mean():
        def local():
            context = tf.distribute.get_replica_context()
            return context.all_reduce(tf.distribute.ReduceOp.MEAN, [tf.identity(v) for v in values])

        return [strategy.experimental_local_results(m)[0] for m in strategy.run(local)]

    for variable, value in zip(values, mean()):
        variable.assign(value)
