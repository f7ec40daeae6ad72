"""TF Serving SavedModels of keras_resnet classifiers.

  export        the binary (python -m keras_resnet.savedmodels.export, keras-resnet-export)
  sources       where the model, preprocessing and class names come from
  signatures    serving_default, predict_tensor, classify
  images        client images, checked and decoded within a bound
  saved_model   one SavedModel folder: signatures, labels asset, warm-up
  warmup        assets.extra/tf_serving_warmup_requests
  versions      <export_base>/<model_name>/<version>, atomic publication, pruning
  predict_api   TF Serving's gRPC and REST Predict conversions, offline
"""

from keras_resnet.extras import require

require("keras_resnet.savedmodels", "serve", ["tensorflow", "tensorflow_serving", "absl"])
