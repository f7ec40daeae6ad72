"""Trains a zoo model on any input pipeline; rerun the same command to resume.

    python -m trainers.train --model=resnet20 --dataset=cifar10 \
        --data_dir=../shared/datasets/cifar10-jpeg.tar.gz --model_dir=/work/runs/resnet20
"""

import json
import os
import sys

from absl import app, flags, logging

from trainers import flags as trainer_flags

FLAGS = flags.FLAGS
RUN_CONFIG_FILE = "run_config.json"
# Flags that define a run: a model_dir resumes only the run it was made by.
RUN_DEFINING = ("model", "shortcut", "variant", "dataset", "validation_split",
                "batch_size", "lr_schedule", "mixed_precision")


def check_flags():
    """Flag errors that absl's types cannot express, before any work."""
    positive = {"batch_size": FLAGS.batch_size, "base_learning_rate": FLAGS.base_learning_rate,
                "log_steps": FLAGS.log_steps, "keep_checkpoints": FLAGS.keep_checkpoints,
                "epochs_between_evals": FLAGS.epochs_between_evals,
                "steps_per_execution": FLAGS.steps_per_execution}
    for name in ("train_epochs", "train_steps", "steps_per_epoch", "num_gpus"):
        if getattr(FLAGS, name) is not None:
            positive[name] = getattr(FLAGS, name)
    for name, value in positive.items():
        if value <= 0:
            raise app.UsageError(f"--{name}={value} must be > 0")
    for name in ("weight_decay", "label_smoothing", "warmup_epochs", "num_cpu_replicas"):
        if getattr(FLAGS, name) < 0:
            raise app.UsageError(f"--{name}={getattr(FLAGS, name)} must be >= 0")
    if FLAGS.label_smoothing >= 1:
        raise app.UsageError(f"--label_smoothing={FLAGS.label_smoothing} must be < 1")
    if FLAGS.profile_steps and len(FLAGS.profile_steps) != 2:
        raise app.UsageError(f"--profile_steps={FLAGS.profile_steps} must be 'first,last'")


def run_config():
    return {name: getattr(FLAGS, name) for name in RUN_DEFINING}


def check_model_dir(model_dir, config, chief):
    """A model_dir belongs to one run: resuming it with other flags is refused."""
    path = os.path.join(model_dir, RUN_CONFIG_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        changed = {k: (saved.get(k), v) for k, v in config.items() if saved.get(k) != v}
        if changed:
            detail = ", ".join(f"--{k}={new!r} (was {old!r})" for k, (old, new) in changed.items())
            raise app.UsageError(
                f"--model_dir={model_dir} holds a run made with other flags: {detail}. "
                "Rerun with the original flags to resume, or use a new --model_dir."
            )
    elif chief:
        os.makedirs(model_dir, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)


def main(argv):
    del argv
    check_flags()
    # Strategy first: splitting the CPU must happen before TensorFlow starts.
    from trainers import distribution

    strategy = distribution.get_strategy(
        FLAGS.distribution_strategy, FLAGS.num_gpus, FLAGS.num_cpu_replicas, FLAGS.tpu
    )
    distribution.check_batch(FLAGS.batch_size, strategy)
    distribution.set_precision(FLAGS.mixed_precision)

    from trainers.loop import Run, train

    chief = distribution.is_chief(strategy)
    check_model_dir(FLAGS.model_dir, run_config(), chief)
    result = train(Run.from_flags(FLAGS), strategy, chief)
    if result.get("nan_step") is not None:
        sys.exit(
            f"Training stopped: the loss became NaN or infinite at step {result['nan_step']}. "
            f"The last good checkpoint is kept: {result['last_checkpoint']}. "
            "Lower --base_learning_rate or add warm-up (--warmup_epochs), then rerun."
        )
    logging.info("Results: %s", json.dumps(result))
    print(json.dumps(result, indent=2))


def run():
    """Console-script entry point (keras-resnet-train)."""
    trainer_flags.define_train_flags()
    app.run(main)


if __name__ == "__main__":
    run()
