"""SIGTERM, the signal of Kubernetes, Slurm and cloud preemption: the run
saves a checkpoint at the next call boundary and exits; rerunning the same
command resumes from that step."""

import functools
import signal
import sys

import keras
import tensorflow as tf
from absl import logging

# The shell's status for a process ended by SIGTERM (128 + 15): schedulers
# treat it as the signal's own outcome, and a restart policy reruns the job.
EXIT_CODE = 143


class Preempted(BaseException):
    """Raised out of fit once the checkpoint is written, through the trainer
    (and keras-tuner, which catches Exception) to the binary's main."""

    def __init__(self, step):
        super().__init__(f"preempted (SIGTERM) at step {step}")
        self.step = step


class Preemption(keras.callbacks.Callback):
    """Stops training on SIGTERM with a checkpoint of the step reached.

    Every worker must stop at the same step, so under MultiWorkerMirrored
    the workers agree after each call (a scalar all-reduce): one signalled
    worker stops them all.
    """

    def __init__(self, strategy, save):
        super().__init__()
        self.strategy = strategy
        self.save = save  # save(model, step), or None on workers that write nothing
        self.requested = False
        self._previous = None
        self._agree = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)

    def on_train_begin(self, logs=None):
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def on_train_end(self, logs=None):
        signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum, frame):
        logging.warning("SIGTERM: saving a checkpoint at the next step boundary, then exiting")
        self.requested = True

    def _any_worker_requested(self):
        if not self._agree:
            return self.requested
        flag = tf.constant(int(self.requested))
        total = self.strategy.reduce(tf.distribute.ReduceOp.SUM,
                                     self.strategy.run(lambda: flag), axis=None)
        return int(total) > 0

    def on_train_batch_end(self, batch, logs=None):
        if not self._any_worker_requested():
            return
        step = int(self.model.optimizer.iterations.numpy())
        if self.save is not None:
            self.save(self.model, step)
        signal.signal(signal.SIGTERM, self._previous)
        raise Preempted(step)


def exits_when_preempted(main):
    """Wraps a binary's main: a preempted run exits with EXIT_CODE."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Preempted as stop:
            logging.warning("Preempted (SIGTERM) at step %d with a checkpoint saved; rerun "
                            "the same command to resume from it.", stop.step)
            sys.exit(EXIT_CODE)

    return wrapper
