"""The training run: model, optimizer, resume, fit, results. Strategy-blind:
whatever `strategy` is, the same code runs under its scope."""

import dataclasses
import hashlib
import json
import math
import os
import time

import keras
import tensorflow as tf
from absl import logging

import keras_resnet
from keras_resnet import model_dir as model_dir_lib
from keras_resnet.trainers import callbacks as cb
from keras_resnet.trainers import curves, optimizers, preemption, schedules, steps
from keras_resnet.trainers.data import InputOptions, canonical_name, load_dataset, pipeline
from keras_resnet.trainers.data.streaming import evaluate_ten_crop

RESULTS_FILE = "results.json"
CURVES_FILE = "training_curves.png"
RUN_CONFIG_FILE = "run_config.json"
# Settings that define a run: a model_dir resumes only the run that made it.
RUN_DEFINING = ("model", "shortcut", "variant", "dataset", "validation_split",
                "batch_size", "lr_schedule", "use_synthetic_data",
                # Lives in the checkpointed optimizer: a changed flag would be ignored.
                "ema_decay")
# Settings a resumed run may change: recorded, and applied from the step reached
# (the learning-rate schedule is rebuilt from them).
SCHEDULE = ("train_steps", "train_epochs", "steps_per_epoch", "base_learning_rate",
            "lr_boundaries", "warmup_epochs", "momentum", "nesterov", "weight_decay",
            "decay_bn_and_bias", "label_smoothing")


@dataclasses.dataclass
class Run:
    """Everything one training run needs; `tune` builds these directly."""

    model: str
    model_dir: str
    dataset: str = "cifar10"
    data_dir: str = None
    shortcut: str = None
    variant: str = "v1"
    zero_init_residual: bool = False
    sync_bn: bool = False
    validation_split: bool = False
    use_synthetic_data: bool = False
    input_options: InputOptions = InputOptions()
    batch_size: int = 128
    train_epochs: int = None
    train_steps: int = None
    steps_per_epoch: int = None
    lr_schedule: str = "paper"
    base_learning_rate: float = 0.1
    lr_boundaries: tuple = (30, 60, 80)
    warmup_epochs: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    decay_bn_and_bias: bool = True
    label_smoothing: float = 0.0
    ema_decay: float = 0.0
    jit_compile: bool = False
    steps_per_execution: int = 16
    seed: int = None
    skip_eval: bool = False
    epochs_between_evals: int = 1
    keep_checkpoints: int = 3
    log_steps: int = 100
    enable_tensorboard: bool = False
    profile_steps: tuple = None
    export_dir: str = None
    verbose: int = None  # Keras fit verbosity; None: a bar on a terminal, a line per epoch else

    @classmethod
    def from_flags(cls, flags):
        values = {f.name: getattr(flags, f.name) for f in dataclasses.fields(cls)
                  if f.name in flags}
        values["input_options"] = InputOptions(
            shuffle_buffer=flags.shuffle_buffer,
            deterministic=flags.deterministic,
            private_threadpool_size=flags.private_threadpool_size,
            seed=flags.seed,
            skip_corrupt=flags.skip_corrupt,
            cache=flags.cache,
            image_size=flags.image_size,
            train_preprocessing=flags.train_preprocessing,
            color_augment=flags.color_augment,
            ten_crop=flags.ten_crop,
            tfds_manual_dir=flags.tfds_manual_dir,
        )
        values["dataset"] = canonical_name(flags.dataset)
        values["lr_boundaries"] = tuple(float(b) for b in flags.lr_boundaries)
        if flags.profile_steps:
            values["profile_steps"] = tuple(int(s) for s in flags.profile_steps)
        return cls(**values)


@keras.saving.register_keras_serializable(package="trainers")
class SparseCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer labels, with optional label smoothing."""

    def __init__(self, label_smoothing=0.0, name="sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        classes = keras.ops.shape(y_pred)[-1]
        one_hot = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, [-1]), "int32"), classes)
        return keras.losses.categorical_crossentropy(
            one_hot, y_pred, label_smoothing=self.label_smoothing
        )

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def _compile(model, run, optimizer, steps_per_execution):
    model.compile(
        optimizer=optimizer,
        loss=SparseCrossentropy(run.label_smoothing),
        # Weighted: eval pads its last steps with weight-0 examples.
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                          keras.metrics.SparseCategoricalCrossentropy(name="cross_entropy")],
        steps_per_execution=steps_per_execution,
        jit_compile=run.jit_compile,
    )


def build_model(run, dataset, total_steps, steps_per_epoch, steps_per_execution):
    """A fresh model and optimizer, or both restored from the last checkpoint.

    Returns (model, step it was saved at)."""
    restored = _load_checkpoint(run.model_dir)
    if restored is not None:
        step, model = restored
        optimizer = model.optimizer
        # The schedule flags may have changed (check_model_dir records it):
        # schedules count optimizer steps, so a rebuilt one continues at `step`.
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        inner.learning_rate = _schedule(run, total_steps, steps_per_epoch)
        inner.momentum, inner.nesterov = run.momentum, run.nesterov
    else:
        step = 0
        kwargs = {"variant": run.variant, "zero_init_residual": run.zero_init_residual,
                  "sync_bn": run.sync_bn}
        if run.shortcut:
            kwargs["shortcut"] = run.shortcut
        model = keras_resnet.get_model(
            run.model, input_shape=dataset.image_shape, classes=dataset.num_classes, **kwargs
        )
        optimizer = optimizers.build(_schedule(run, total_steps, steps_per_epoch),
                                     run.momentum, run.nesterov, run.ema_decay)
    # Regularizers live on variables and are not saved: attach them each time.
    keras_resnet.apply_weight_decay(model, run.weight_decay, run.decay_bn_and_bias)
    _compile(model, run, optimizer, steps_per_execution)
    optimizers.prepare(model)
    steps.install(model)
    return model, step


def _load_checkpoint(model_dir):
    """(step, model) of the newest checkpoint that loads, or None if there
    is none. A damaged one (a disk error, a copy cut short) is skipped with a
    warning that names it."""
    found = model_dir_lib.checkpoints(model_dir)
    for step, path in reversed(found):
        try:
            model = keras.models.load_model(path)
        except Exception as error:  # any damage: h5py, zipfile, Keras errors alike
            logging.warning("Cannot load checkpoint %s (%s: %s); trying the one before it.",
                            path, type(error).__name__, str(error).splitlines()[0][:200])
            continue
        logging.info("Resuming from %s (step %d)", path, step)
        return step, model
    if found:
        raise ValueError(f"--model_dir={model_dir}: none of its checkpoints loads "
                         f"({', '.join(p for _, p in found)}); use a new --model_dir")
    return None


def _schedule(run, total_steps, steps_per_epoch):
    return schedules.build(
        run.lr_schedule,
        base_lr=run.base_learning_rate,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        batch_size=run.batch_size,
        cifar=keras_resnet.is_cifar_model(run.model),
        depth=int(run.model.lstrip("resnetplain")),
        boundary_epochs=run.lr_boundaries,
        warmup_epochs=run.warmup_epochs,
    )


def plan(run, dataset):
    """(steps_per_epoch, total_steps, epochs, steps_per_execution) of a run.

    Keras runs whole executions, so an epoch is a multiple of
    steps_per_execution: a default epoch is rounded up to one; given epoch
    and step counts shrink steps_per_execution to their common divisor.
    """
    execution = run.steps_per_execution
    if run.steps_per_epoch:
        steps_per_epoch = run.steps_per_epoch
    else:
        passes = math.ceil(dataset.num_train / run.batch_size)
        steps_per_epoch = math.ceil(passes / execution) * execution
    if run.train_steps:
        total = run.train_steps
    elif run.train_epochs:
        total = run.train_epochs * steps_per_epoch
    else:
        total = schedules.default_steps(
            keras_resnet.is_cifar_model(run.model), steps_per_epoch, run.batch_size
        )
    execution = math.gcd(execution, steps_per_epoch, total)
    return steps_per_epoch, total, math.ceil(total / steps_per_epoch), execution


def weights_fingerprint(model):
    """sha256 of all weights: replicas and workers that agree print the same."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(keras.ops.convert_to_numpy(weight).tobytes())
    return digest.hexdigest()


def check_model_dir(run, chief):
    """Refuses to resume a model_dir with other run-defining settings;
    records (and warns of) changed schedule settings."""
    config = {name: getattr(run, name) for name in RUN_DEFINING}
    config["image_size"] = run.input_options.image_size
    config["train_preprocessing"] = run.input_options.train_preprocessing
    config["mixed_precision"] = keras.mixed_precision.global_policy().name
    schedule = {name: getattr(run, name) for name in SCHEDULE}
    schedule["lr_boundaries"] = list(schedule["lr_boundaries"])  # as JSON gives it back
    path = os.path.join(run.model_dir, RUN_CONFIG_FILE)
    if not os.path.exists(path):
        if chief:
            os.makedirs(run.model_dir, exist_ok=True)
            model_dir_lib.write_json(path, {**config, "schedule": schedule, "schedule_changes": []})
        return
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    # A setting the record lacks was added to the trainer after the run began.
    unrecorded = sorted(k for k in config if k not in saved)
    if unrecorded:
        logging.warning("%s predates settings %s; resuming with this run's values.",
                        path, ", ".join(unrecorded))
    changed = {k: (saved[k], v) for k, v in config.items() if k in saved and saved[k] != v}
    if changed:
        raise ValueError(
            f"--model_dir={run.model_dir} holds a run made with other settings: "
            f"{_describe(changed)}. Rerun with the original flags to resume, or use a new "
            "--model_dir."
        )
    recorded = saved.get("schedule", schedule)
    changed = {k: (recorded.get(k), v) for k, v in schedule.items() if recorded.get(k) != v}
    if changed or "schedule" not in saved:
        latest = model_dir_lib.latest_checkpoint(run.model_dir)
        step = latest[0] if latest else 0
        if changed:
            logging.warning("Resuming at step %d with %s: the learning-rate schedule is rebuilt "
                            "from these values and continues at step %d.", step,
                            _describe(changed), step)
        if chief:
            history = saved.get("schedule_changes", [])
            if changed:
                history.append({"step": step, **{k: new for k, (_, new) in changed.items()}})
            model_dir_lib.write_json(path, {**saved, "schedule": schedule,
                                            "schedule_changes": history})


def _describe(changed):
    return ", ".join(f"--{k}={new!r} (was {old!r})" for k, (old, new) in changed.items())


def train(run, strategy, chief=True, dataset=None):
    """Trains (or resumes) `run` under `strategy`; returns the results dict.

    `dataset`: what `load_dataset` returns for run's data settings, when the
    caller already holds it (tune reuses one across its trials)."""
    if run.seed is not None:
        keras.utils.set_random_seed(run.seed)
    if run.input_options.deterministic:
        tf.config.experimental.enable_op_determinism()
    if dataset is None:
        dataset = load_dataset(run.dataset, run.data_dir, run.input_options,
                               run.validation_split, run.use_synthetic_data)
    steps_per_epoch, total_steps, epochs, execution = plan(run, dataset)
    check_model_dir(run, chief)
    if chief:
        os.makedirs(run.model_dir, exist_ok=True)
        dataset.preprocessing.save(os.path.join(run.model_dir, model_dir_lib.PREPROCESSING_FILE))
        model_dir_lib.write_labels(run.model_dir, dataset.class_names)

    with strategy.scope():
        model, step = build_model(run, dataset, total_steps, steps_per_epoch, execution)
    eval_data = None
    if not run.skip_eval:
        eval_data = strategy.distribute_datasets_from_function(
            lambda ctx: dataset.eval(run.batch_size, ctx))

    eval_steps = pipeline.eval_steps(dataset.num_eval, run.batch_size)
    statistics = optimizers.averaged_statistics(model)
    summary_dir = os.path.join(run.model_dir, "tensorboard") if run.enable_tensorboard and chief else None
    throughput = cb.Throughput(run.batch_size, run.log_steps, summary_dir)
    nan_stop = cb.NanStop()
    evaluation = cb.Evaluate(eval_data, eval_steps, run.epochs_between_evals, epochs, statistics)

    def save(model, step):
        logging.info("Saved checkpoint %s", model_dir_lib.save_checkpoint(
            model, run.model_dir, step, run.keep_checkpoints))

    callbacks = [
        preemption.Preemption(strategy, save if chief else None),
        throughput,
        nan_stop,
        evaluation,  # before the checkpoint: averages the replicas' BN statistics
        cb.StepBudget(total_steps),
    ]
    if chief:  # only worker 0 writes into model_dir
        callbacks += [  # an epoch's record before its checkpoint: a resumed run has both
            cb.MetricsFile(os.path.join(run.model_dir, cb.METRICS_FILE), throughput),
            cb.Checkpoint(save, nan_stop),
        ]
    if summary_dir:
        callbacks.append(keras.callbacks.TensorBoard(
            summary_dir, profile_batch=run.profile_steps or 0))
    logging.info(
        "Training %s on %s: %d replicas, global batch %d, %d steps (%d epochs of %d, %d per call), "
        "from step %d", run.model, dataset.name, strategy.num_replicas_in_sync, run.batch_size,
        total_steps, epochs, steps_per_epoch, execution, step,
    )
    start = time.time()
    _fit(model, run, strategy, dataset, step, steps_per_epoch, epochs, callbacks)
    optimizers.use_averages(model)  # a no-op without --ema_decay
    steps.average_statistics(model, statistics)
    result = {
        "model": run.model,
        "dataset": dataset.name,
        "step": int(model.optimizer.iterations.numpy()),
        "weights_sha256": weights_fingerprint(model),
        "train_seconds_this_process": round(time.time() - start, 1),
        "nan_step": nan_stop.nan_step,
    }
    if nan_stop.nan_step is not None:
        latest = model_dir_lib.latest_checkpoint(run.model_dir)
        result["last_checkpoint"] = latest[1] if latest else None
        return result
    if eval_data is not None:
        if evaluation.epoch == epochs - 1 and not run.ema_decay:  # validated already
            logs = evaluation.logs
        else:
            logs = cb.evaluation_logs(steps.evaluate(model, eval_data, eval_steps))
        result.update({"eval_split": "validation" if run.validation_split else "test",
                       "eval_loss": logs["loss"], "eval_accuracy": logs["accuracy"],
                       "eval_examples": dataset.num_eval})
        if dataset.eval_ten_crop is not None:
            result["eval_ten_crop_accuracy"] = evaluate_ten_crop(model, dataset, run.batch_size, strategy)
    if chief:
        _write_outputs(run, model, dataset, result)
    return result


def _fit(model, run, strategy, dataset, step, steps_per_epoch, epochs, callbacks):
    """Keras fit from `step` to the last epoch. A run stopped mid-epoch (by
    SIGTERM) first finishes that epoch's remaining steps. Each fit reads the
    training stream from where the previous run left it."""
    verbose = run.verbose if run.verbose is not None else ("auto" if os.isatty(1) else 2)
    epoch = step // steps_per_epoch
    while epoch < epochs:
        remaining = (epoch + 1) * steps_per_epoch - step
        last = epoch + 1 if remaining < steps_per_epoch else epochs
        train_data = strategy.distribute_datasets_from_function(
            lambda ctx, start=step: dataset.train(run.batch_size, ctx, start_step=start))
        model.fit(train_data, epochs=last, initial_epoch=epoch, steps_per_epoch=remaining,
                  callbacks=callbacks, verbose=verbose,
                  shuffle=False)  # the pipelines shuffle; Keras would warn it ignores this
        if model.stop_training and int(model.optimizer.iterations.numpy()) < last * steps_per_epoch:
            return  # NaN stop, or the step budget spent
        step, epoch = last * steps_per_epoch, last


def _write_outputs(run, model, dataset, result):
    model_dir_lib.atomic_write(os.path.join(run.model_dir, model_dir_lib.MODEL_FILE), model.save)
    records = cb.read_metrics(os.path.join(run.model_dir, cb.METRICS_FILE))
    if records:
        curves.plot_runs({run.model: records}, os.path.join(run.model_dir, CURVES_FILE),
                         title=f"{run.model} on {dataset.name}")
    if run.export_dir:
        from keras_resnet.savedmodels.export import export_model_dir

        result["export"] = export_model_dir(run.model_dir, run.export_dir)
    model_dir_lib.write_json(os.path.join(run.model_dir, RESULTS_FILE), result)
