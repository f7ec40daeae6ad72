"""The trainer's optimizer: SGD with momentum, optionally ending with an
exponential moving average (EMA) of the whole network.

Keras' `use_ema` averages the trainable weights only, which would leave the
averaged kernels normalized by BatchNorm statistics of the raw weights: a net
that never existed. `AveragedSGD` also averages the moving statistics, as
the averaged model of timm, Flax and the JAX recipe check does.
"""

import keras
from keras.src.utils import tracking


@keras.saving.register_keras_serializable(package="trainers")
class AveragedSGD(keras.optimizers.SGD):
    """keras.optimizers.SGD whose EMA (`use_ema=True`) also covers the
    variables given to `average_statistics`: BN's moving mean and variance.

    The statistics' averages are optimizer variables appended after SGD's
    own, so they are checkpointed with it; a checkpoint loaded before
    `average_statistics` is called holds them until then.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._statistics = []
        self._restored_averages = None

    @tracking.no_automatic_dependency_tracking
    def average_statistics(self, variables):
        """Averages `variables` (non-trainable) too. Call once, after `build`."""
        if not self.use_ema or self._statistics:
            return
        self._statistics = list(variables)
        averages = [self.add_variable_from_reference(v, "average") for v in self._statistics]
        if self._restored_averages is not None:
            if len(self._restored_averages) != len(averages):
                raise ValueError(
                    f"The checkpoint averages {len(self._restored_averages)} statistics, "
                    f"the model has {len(averages)}"
                )
            for average, value in zip(averages, self._restored_averages):
                average.assign(value)
            self._restored_averages = None
        self._model_variables_moving_average = self._model_variables_moving_average + averages

    def load_own_variables(self, store):
        own = len(self.variables)
        super().load_own_variables({str(i): store[str(i)] for i in range(own)})
        extra = [store[str(i)] for i in range(own, len(store.keys()))]
        self._restored_averages = extra or None

    def _update_model_variables_moving_average(self, trainable_variables):
        super()._update_model_variables_moving_average(
            list(trainable_variables) + self._statistics)

    def _overwrite_model_variables_with_average_value(self, trainable_variables):
        super()._overwrite_model_variables_with_average_value(
            list(trainable_variables) + self._statistics)

    def finalize_variable_values(self, var_list):
        """Nothing: Keras calls this at the end of every fit, and a run
        resumed mid-epoch fits twice. The trainer calls `use_averages`."""

    def use_averages(self, var_list):
        """Replaces the net (`var_list` and the statistics) by its average."""
        if self.use_ema:
            self._overwrite_model_variables_with_average_value(var_list)


def averaged_statistics(model):
    """The non-trainable float variables of `model` (BN moving statistics)."""
    return [v for v in model.non_trainable_variables if "float" in str(v.dtype)]


def build(schedule, momentum, nesterov, ema_decay):
    """The optimizer of a run; ema_decay 0 means no averaging."""
    return AveragedSGD(schedule, momentum=momentum, nesterov=nesterov,
                       use_ema=ema_decay > 0, ema_momentum=ema_decay or 0.99)


def use_averages(model):
    """Ends a run with the averaged net (a no-op without EMA)."""
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    optimizer.use_averages(model.trainable_weights)


def prepare(model):
    """Builds `model`'s optimizer and hands it the statistics to average."""
    optimizer = model.optimizer
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # mixed_float16's loss scaling
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    if isinstance(inner, AveragedSGD):
        inner.average_statistics(averaged_statistics(model))
