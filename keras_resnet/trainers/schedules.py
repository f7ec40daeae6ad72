"""Learning-rate schedules: the paper's steps, piecewise, cosine, with warm-up.

Schedules count optimizer steps, so a resumed run picks up exactly where the
checkpointed optimizer stopped.
"""

import math

import keras
from keras import ops

# The paper's CIFAR-10 recipe, in iterations at batch 128 (section 4.2).
CIFAR_BATCH = 128
CIFAR_BOUNDARIES = (32_000, 48_000)
CIFAR_STEPS = 64_000
CIFAR_WARMUP = (400, 0.01)  # ResNet-110/1202: 0.01 until training error < 80%
# ImageNet (section 3.4): 0.1, divided by 10 on plateaus, 60e4 iterations at
# batch 256 = 120 epochs; plateaus fall near epochs 30, 60, 90.
IMAGENET_BATCH = 256
IMAGENET_BOUNDARY_EPOCHS = (30, 60, 90)
IMAGENET_EPOCHS = 120


@keras.saving.register_keras_serializable(package="trainers")
class Warmup(keras.optimizers.schedules.LearningRateSchedule):
    """Runs `after` once `steps` have passed; before that, a constant
    `warmup_lr` (the paper's) or a linear ramp to `after(steps)`."""

    def __init__(self, after, steps, warmup_lr=None):
        self.after = after
        self.steps = int(steps)
        self.warmup_lr = warmup_lr

    def __call__(self, step):
        step = ops.cast(step, "float32")
        target = self.after(step)
        if self.warmup_lr is not None:
            warm = ops.cast(self.warmup_lr, "float32")
        else:
            warm = self.after(self.steps) * (step + 1) / max(self.steps, 1)
        return ops.where(step < self.steps, warm, target)

    def get_config(self):
        return {
            "after": keras.optimizers.schedules.serialize(self.after),
            "steps": self.steps,
            "warmup_lr": self.warmup_lr,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["after"] = keras.optimizers.schedules.deserialize(config["after"])
        return cls(**config)


def piecewise(base_lr, boundaries, decay=0.1):
    """`base_lr` for the first `boundaries[0]` updates, then /10 at each.

    The optimizer asks for the rate at its 0-based update count, and Keras'
    PiecewiseConstantDecay switches after `step <= boundary`; boundary - 1
    makes update number 32,000 the first at 0.01, so 32,000 updates run at
    0.1, as in the paper."""
    values = [base_lr * decay**i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [math.ceil(b) - 1 for b in boundaries], values
    )


def build(kind, *, base_lr, total_steps, steps_per_epoch, batch_size, cifar, depth,
          boundary_epochs=(), warmup_epochs=0.0):
    """The schedule for a run. `base_lr` is at the reference batch (128 for
    CIFAR, 256 for ImageNet) and scales linearly with `batch_size`."""
    reference = CIFAR_BATCH if cifar else IMAGENET_BATCH
    lr = base_lr * batch_size / reference
    if kind == "paper":
        if cifar:
            scale = CIFAR_BATCH / batch_size  # same epochs at any batch size
            schedule = piecewise(lr, [b * scale for b in CIFAR_BOUNDARIES])
        else:
            schedule = piecewise(lr, [e * steps_per_epoch for e in IMAGENET_BOUNDARY_EPOCHS])
    elif kind == "piecewise":
        schedule = piecewise(lr, [float(e) * steps_per_epoch for e in boundary_epochs])
    elif kind == "cosine":
        schedule = keras.optimizers.schedules.CosineDecay(lr, max(int(total_steps), 1))
    else:
        raise ValueError(f"--lr_schedule={kind!r} is unknown; allowed: paper, piecewise, cosine")
    warmup_steps = int(warmup_epochs * steps_per_epoch)
    if warmup_steps:
        schedule = Warmup(schedule, warmup_steps)
    if kind == "paper" and cifar and depth >= 110:
        steps, warm_lr = CIFAR_WARMUP
        schedule = Warmup(schedule, steps * CIFAR_BATCH / batch_size, warm_lr * lr / base_lr)
    return schedule


def default_steps(cifar, steps_per_epoch, batch_size):
    """The paper's training length at this batch size."""
    if cifar:
        return round(CIFAR_STEPS * CIFAR_BATCH / batch_size)
    return IMAGENET_EPOCHS * steps_per_epoch
