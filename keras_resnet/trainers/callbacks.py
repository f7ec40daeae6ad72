"""What the trainer watches while Keras fits: throughput, metrics file,
checkpoints, NaN stop and the step budget."""

import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from keras_resnet.trainers import steps as steps_lib

METRICS_FILE = "metrics.jsonl"


def current_lr(model):
    """The rate of the last update made (optimizer.learning_rate is the next one's)."""
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    schedule = optimizer._learning_rate
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        step = max(int(optimizer.iterations.numpy()) - 1, 0)
        return float(keras.ops.convert_to_numpy(schedule(step)))
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class Throughput(keras.callbacks.Callback):
    """images/s in the progress bar, the log and TensorBoard."""

    def __init__(self, global_batch, log_steps, summary_dir=None):
        super().__init__()
        self.global_batch = global_batch
        self.log_steps = log_steps
        self.writer = tf.summary.create_file_writer(summary_dir) if summary_dir else None
        self.epoch_images_per_sec = None
        self.epoch_calls = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = self.window_start = time.perf_counter()
        self.epoch_first_step = int(self.model.optimizer.iterations.numpy())
        self.window_step = None
        self.epoch_calls = 0  # fit calls the train function once per steps_per_execution

    def on_train_batch_end(self, batch, logs=None):
        self.epoch_calls += 1
        step = int(self.model.optimizer.iterations.numpy())
        now = time.perf_counter()
        if self.window_step is None:  # the epoch's first call may include tracing
            self.window_step, self.window_start = step, now
            return
        steps = step - self.window_step
        if steps <= 0:
            return
        rate = steps * self.global_batch / (now - self.window_start)
        if logs is not None:
            logs["images_per_sec"] = rate
        if steps >= self.log_steps:
            logging.info("step %d: %.1f images/s, loss %.4f", step, rate,
                         (logs or {}).get("loss", float("nan")))
            if self.writer:
                with self.writer.as_default(step=step):
                    tf.summary.scalar("examples_per_sec", rate)
                    tf.summary.scalar("learning_rate", current_lr(self.model))
            self.window_step, self.window_start = step, now

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if step > self.epoch_first_step:
            elapsed = time.perf_counter() - self.epoch_start
            self.epoch_images_per_sec = (step - self.epoch_first_step) * self.global_batch / elapsed
            if logs is not None:  # shown on the epoch's progress line
                logs["images_per_sec"] = self.epoch_images_per_sec
            logging.info("epoch %d: %.1f images/s", epoch + 1, self.epoch_images_per_sec)


class MetricsFile(keras.callbacks.Callback):
    """One JSON line per epoch in model_dir: what the curves and the results
    table are drawn from."""

    def __init__(self, path, throughput):
        super().__init__()
        self.path = path
        self.throughput = throughput
        self.epoch_start = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        record = {
            "epoch": epoch + 1,
            "step": int(self.model.optimizer.iterations.numpy()),
            "learning_rate": current_lr(self.model),
            "images_per_sec": self.throughput.epoch_images_per_sec,
            "train_calls": self.throughput.epoch_calls,
            "epoch_seconds": round(time.time() - self.epoch_start, 2),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        record.update({k: float(v) for k, v in (logs or {}).items() if k != "images_per_sec"})
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(path):
    """Metrics records, the last one per step (a resumed run rewrites epochs)."""
    if not os.path.exists(path):
        return []
    by_step = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]


class Evaluate(keras.callbacks.Callback):
    """Validation after every `every` epochs and after the last, with val_*
    in the epoch's logs (so metrics.jsonl and the progress bar show it).

    Before it, and before any checkpoint, the replicas' BN statistics are
    averaged: what is evaluated is what is saved.
    """

    def __init__(self, data, steps, every, last_epoch, statistics):
        super().__init__()
        self.data, self.steps, self.every, self.last_epoch = data, steps, every, last_epoch
        self.statistics = statistics
        self.epoch, self.logs = None, {}

    def on_epoch_end(self, epoch, logs=None):
        steps_lib.average_statistics(self.model, self.statistics)
        if self.data is None or ((epoch + 1) % self.every and epoch + 1 != self.last_epoch):
            return
        self.epoch, self.logs = epoch, evaluation_logs(
            steps_lib.evaluate(self.model, self.data, self.steps))
        if logs is not None:
            logs.update({f"val_{name}": value for name, value in self.logs.items()})


def evaluation_logs(metrics):
    """loss is the test cross-entropy, weighted like accuracy: Keras' own
    eval loss would add the L2 penalty and count the weight-0 padding."""
    return {"loss": metrics["cross_entropy"], "accuracy": metrics["accuracy"],
            "cross_entropy": metrics["cross_entropy"]}


class NanStop(keras.callbacks.Callback):
    """Stops on a NaN or infinite loss (or weights, see Checkpoint) before
    anything is saved after it."""

    def __init__(self):
        super().__init__()
        self.nan_step = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.nan_step = int(self.model.optimizer.iterations.numpy())
            self.model.stop_training = True


class Checkpoint(keras.callbacks.Callback):
    """Saves model and optimizer at each epoch end, unless the loss diverged."""

    def __init__(self, save, nan_stop):
        super().__init__()
        self.save = save  # save(model, step)
        self.nan_stop = nan_stop

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_stop.nan_step is not None:
            return
        if not all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in self.model.weights):
            # A finite mean loss can hide weights that already overflowed.
            self.nan_stop.nan_step = int(self.model.optimizer.iterations.numpy())
            self.model.stop_training = True
            return
        self.save(self.model, int(self.model.optimizer.iterations.numpy()))


class StepBudget(keras.callbacks.Callback):
    """Stops at exactly `total_steps` (the paper stops at 64k iterations)."""

    def __init__(self, total_steps):
        super().__init__()
        self.total_steps = total_steps

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.total_steps:
            self.model.stop_training = True
