"""Trains a zoo model on any input pipeline; rerun the same command to resume.

    python -m keras_resnet.trainers.train --model=resnet20 --dataset=cifar10 \
        --data_dir=../shared/datasets/cifar10-jpeg.tar.gz --model_dir=/work/runs/resnet20
"""

import json
import sys

from absl import app, flags, logging

from keras_resnet.arguments import list_flags_in_help
from keras_resnet.trainers import distribution, preemption
from keras_resnet.trainers import flags as trainer_flags
from keras_resnet.trainers.data import load_dataset
from keras_resnet.trainers.loop import Run, check_model_dir, train

FLAGS = flags.FLAGS


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
    for name in ("weight_decay", "warmup_epochs", "num_cpu_replicas"):
        if getattr(FLAGS, name) < 0:
            raise app.UsageError(f"--{name}={getattr(FLAGS, name)} must be >= 0")
    for name in ("label_smoothing", "ema_decay"):
        if not 0 <= getattr(FLAGS, name) < 1:
            raise app.UsageError(f"--{name}={getattr(FLAGS, name)} must be in [0, 1)")
    if FLAGS.profile_steps and len(FLAGS.profile_steps) != 2:
        raise app.UsageError(f"--profile_steps={FLAGS.profile_steps} must be 'first,last'")
    if FLAGS.export_dir:
        try:  # before training, not after it
            import keras_resnet.savedmodels  # noqa: F401
        except ImportError as error:
            raise app.UsageError(f"--export_dir: {error}") from None


@preemption.exits_when_preempted
def main(argv):
    del argv
    check_flags()
    run = Run.from_flags(FLAGS)
    try:  # flag values that only the strategy, the data or model_dir can judge
        strategy = distribution.from_flags(FLAGS)
        chief = distribution.is_chief(strategy)
        dataset = load_dataset(run.dataset, run.data_dir, run.input_options,
                               run.validation_split, run.use_synthetic_data)
        check_model_dir(run, chief)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    try:
        result = train(run, strategy, chief, dataset=dataset)
    except distribution.PEER_ERRORS as error:
        message = distribution.lost_worker_message(error)
        if message is None:
            raise
        sys.exit(message)
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
    list_flags_in_help(FLAGS)
    app.run(main)


if __name__ == "__main__":
    run()
