"""Every flag of the training binaries, defined in groups in one place.

`train` defines all groups; `tune` reuses them and adds its search flags.
"""

from absl import flags

from keras_resnet import list_models
from keras_resnet.blocks import SHORTCUTS, VARIANTS

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
LR_SCHEDULES = ("paper", "piecewise", "cosine")


def define_model_flags():
    flags.DEFINE_enum("model", "resnet20", list_models(), "Zoo model to train.")
    flags.DEFINE_enum("shortcut", None, list(SHORTCUTS),
                      "Shortcut option (paper section 3.3); default: the model's own "
                      "(A for CIFAR nets, B for ImageNet nets).")
    flags.DEFINE_enum("variant", "v1", list(VARIANTS), "ResNet variant.")
    flags.DEFINE_bool("zero_init_residual", False,
                      "Start the last BN gamma of every residual branch at 0.")
    flags.DEFINE_bool("sync_bn", False,
                      "Batch-norm statistics over all replicas and workers; every "
                      "worker then ends with identical weights, moving averages included.")


def define_data_flags():
    flags.DEFINE_string("dataset", "cifar10",
                        "cifar10, imagenet2012 (or imagenet), folder (an image tree, folder or tar), "
                        "tfrecord (python -m keras_resnet.trainers.prepare's shards), or any TFDS "
                        "image-classification name.")
    flags.DEFINE_string("data_dir", None,
                        "Local copy of the dataset (folder, .tar/.tar.gz, TFRecord "
                        "folder) or the TFDS data_dir.")
    flags.DEFINE_bool("validation_split", False,
                      "Hold a fixed random 10% of the training images out for evaluation "
                      "(at most 5k of an in-memory dataset: CIFAR-10's 45k/5k, as the "
                      "paper); the test split is then never read.")
    flags.DEFINE_bool("use_synthetic_data", False,
                      "Feed random tensors of the dataset's shape: measures the model alone.")
    flags.DEFINE_integer("shuffle_buffer", 10_000, "Shuffle buffer, in examples.")
    flags.DEFINE_bool("skip_corrupt", False,
                      "Skip (and count) corrupt images instead of stopping with an error.")
    flags.DEFINE_integer("private_threadpool_size", 0,
                         "Threads of a private tf.data pool (0: TensorFlow's shared pool).")
    flags.DEFINE_bool("deterministic", False,
                      "Deterministic input order and ops (slower).")
    flags.DEFINE_bool("cache", True,
                      "Keep decoded images in memory where a streamed dataset fits "
                      "(2 GiB, and half the memory available); CIFAR-10 is always held "
                      "in memory.")
    flags.DEFINE_integer("image_size", None,
                         "Model input size for streamed (ImageNet-style) datasets (default 224).")
    flags.DEFINE_enum("train_preprocessing", "scale", ["scale", "inception"],
                      "ImageNet training crops: scale: the paper's (shorter side random in "
                      "[256, 480], random 224 crop); inception: random-resized crop (8-100% "
                      "of the area, aspect 3/4-4/3). Both decode only the crop window.")
    flags.DEFINE_bool("color_augment", False,
                      "ImageNet training: AlexNet's PCA colour augmentation (paper's [21]).")
    flags.DEFINE_bool("ten_crop", False,
                      "ImageNet: also report the paper's 10-crop test accuracy.")
    flags.DEFINE_string("tfds_manual_dir", None,
                        "TFDS manual_dir (imagenet2012: the ImageNet tarballs).")


def define_schedule_flags():
    flags.DEFINE_integer("batch_size", 128, "Global batch size, split across replicas.")
    flags.DEFINE_integer("train_epochs", None,
                         "Epochs to train (default: the paper's schedule).")
    flags.DEFINE_integer("train_steps", None,
                         "Steps to train; overrides --train_epochs.")
    flags.DEFINE_integer("steps_per_epoch", None,
                         "Steps between checkpoints and evaluations (default: one "
                         "pass over the training data).")
    flags.DEFINE_enum("lr_schedule", "paper", list(LR_SCHEDULES),
                      "paper: 0.1, /10 at 32k and 48k of 64k iterations (CIFAR, batch "
                      "128) or at epochs 30/60/90 of 120 (ImageNet); piecewise: "
                      "/10 at --lr_boundaries; cosine: to 0 at the last step.")
    flags.DEFINE_float("base_learning_rate", 0.1,
                       "Learning rate at the reference batch (128 CIFAR, 256 ImageNet); "
                       "scaled linearly with --batch_size.")
    flags.DEFINE_list("lr_boundaries", ["30", "60", "80"],
                      "Epochs where --lr_schedule=piecewise divides the rate by 10.")
    flags.DEFINE_float("warmup_epochs", 0.0,
                       "Linear warm-up epochs. ResNet-110/1202 on CIFAR also get the "
                       "paper's 0.01 for the first 400 iterations under --lr_schedule=paper.")
    flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
    flags.DEFINE_bool("nesterov", False, "Nesterov momentum.")
    flags.DEFINE_float("weight_decay", 1e-4,
                       "L2 weight decay (paper: 1e-4, on every parameter).")
    flags.DEFINE_bool("decay_bn_and_bias", True,
                      "Decay BN gamma/beta and biases too, as the paper (Caffe) does; "
                      "--nodecay_bn_and_bias decays the kernels only.")
    flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing of the cross-entropy.")
    flags.DEFINE_float("ema_decay", 0.0,
                       "Keep an exponential moving average of the network, weights and "
                       "BN moving statistics, with this decay per step (e.g. 0.999), and "
                       "end with it: the final evaluation, model.keras and the export "
                       "hold the averaged net. 0: off.")


def define_distribution_flags():
    flags.DEFINE_enum("distribution_strategy", "default", list(STRATEGIES),
                      "tf.distribute strategy; multi_worker_mirrored reads TF_CONFIG.")
    flags.DEFINE_integer("num_gpus", None,
                         "GPUs for one_device/mirrored (default: all visible).")
    flags.DEFINE_integer("num_cpu_replicas", 0,
                         "Split the CPU into N logical devices and mirror over them "
                         "(mirrored training without GPUs).")
    flags.DEFINE_string("tpu", None, "TPU address for --distribution_strategy=tpu.")
    flags.DEFINE_enum("mixed_precision", "float32", list(PRECISIONS),
                      "Keras dtype policy; mixed_float16 uses dynamic loss scaling. "
                      "mixed_bfloat16 is fastest on CPUs with AVX512_BF16 or AMX.")
    flags.DEFINE_bool("jit_compile", False, "XLA-compile the training step.")
    flags.DEFINE_integer("steps_per_execution", 16,
                         "Training steps per tf.function call (fewer Python round trips).")


def define_run_flags():
    flags.DEFINE_string("model_dir", None, "Checkpoints, metrics and results; rerun to resume.")
    flags.DEFINE_string("export_dir", None, "Export a TF Serving SavedModel here at the end.")
    flags.DEFINE_integer("log_steps", 100, "Steps between images/s log lines.")
    flags.DEFINE_integer("seed", None, "Random seed of weights, data order and augmentation.")
    flags.DEFINE_bool("skip_eval", False, "Skip evaluation during and after training.")
    flags.DEFINE_integer("epochs_between_evals", 1, "Epochs between evaluations.")
    flags.DEFINE_integer("keep_checkpoints", 3, "Newest checkpoints kept in model_dir.")
    flags.DEFINE_bool("enable_tensorboard", False, "Write TensorBoard summaries to model_dir.")
    flags.DEFINE_list("profile_steps", None,
                      "first,last step to profile into TensorBoard (needs --enable_tensorboard).")


def define_train_flags():
    define_model_flags()
    define_data_flags()
    define_schedule_flags()
    define_distribution_flags()
    define_run_flags()
    flags.mark_flag_as_required("model_dir")
