"""tf.data input pipelines, the training loop and the training binaries."""

from keras_resnet.extras import require

require("keras_resnet.trainers", "train", ["tensorflow", "absl", "matplotlib"])
