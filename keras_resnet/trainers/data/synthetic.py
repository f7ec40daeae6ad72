"""Random tensors of a dataset's shape, for measuring the model alone."""

import numpy as np
import tensorflow as tf

from keras_resnet.preprocessing import EvalPreprocessing
from keras_resnet.trainers.data.pipeline import Dataset, per_replica_batch


def synthetic(name, image_size, num_classes, num_train, num_eval, kind):
    """One random batch repeated, for training and evaluation alike (the
    trainer runs a fixed number of eval steps): no input cost at all."""

    def make():
        def build(batch_size, input_context=None, start_step=0):
            batch = per_replica_batch(batch_size, input_context)
            images = tf.random.stateless_uniform(
                [batch, image_size, image_size, 3], seed=[1, 2], minval=-128.0, maxval=128.0
            )
            labels = tf.random.stateless_uniform(
                [batch], seed=[3, 4], maxval=num_classes, dtype=tf.int64
            )
            return tf.data.Dataset.from_tensors((images, labels)).cache().repeat()
        return build

    mean = np.zeros((image_size, image_size, 3), np.float32) if kind == "cifar" else None
    return Dataset(
        name=f"synthetic-{name}",
        class_names=[str(i) for i in range(num_classes)],
        num_train=num_train,
        num_eval=num_eval,
        preprocessing=EvalPreprocessing(kind, image_size, mean),
        train=make(),
        eval=make(),
    )
