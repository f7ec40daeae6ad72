r"""Exports a ResNet classifier as a SavedModel that TF Serving loads as it is.

  python -m savedmodels.export --model_dir=/tmp/resnet56 --export_base=/srv/models
  keras-resnet-export --model=resnet50 --weights=imagenet --export_base=/srv/models

writes /srv/models/<model_name>/<version>/ with the signatures serving_default
(encoded images), predict_tensor (pixels) and classify_tf_example, class
names as an asset and TF Serving warm-up requests. The version appears in
one rename, so a server watching --export_base never loads half of it.
"""

import os

from absl import app, flags, logging

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "A trainer's model_dir: exports its model.keras, "
                    "or its newest checkpoint, with its preprocessing.json and labels.txt.")
flags.DEFINE_string("keras_file", None, "A .keras model to export. Inside a model_dir "
                    "(model.keras or checkpoints/ckpt-*.keras) that model_dir's "
                    "preprocessing.json and labels.txt are used.")
flags.DEFINE_string("model", None, "A zoo model name (e.g. resnet20, resnet50) to export "
                    "with --weights.")
flags.DEFINE_string("weights", None, "With --model: cifar10, imagenet or the path of a "
                    "weights file (.weights.h5, .h5, .keras).")
flags.DEFINE_string("preprocessing", None, "An EvalPreprocessing json (the trainer's "
                    "preprocessing.json). Default: the model_dir's; ImageNet evaluation "
                    "preprocessing for ImageNet zoo models. Required for CIFAR zoo models.")
flags.DEFINE_string("labels", None, "Class names, one per line in class order. Default: "
                    "the model_dir's labels.txt, else CIFAR-10 names for 10-class CIFAR "
                    "models, else class numbers.")
flags.DEFINE_string("export_base", None, "The folder TF Serving watches; the SavedModel "
                    "goes to <export_base>/<model_name>/<version>.")
flags.DEFINE_string("model_name", None, "The served model's name. Default: the zoo name, "
                    "the model_dir's folder name or the .keras file's name.")
flags.DEFINE_integer("version", None, "The version to write; it must not exist. "
                     "Default: one more than the highest version.", lower_bound=1)
flags.DEFINE_integer("keep_versions", None, "Keep the new version and the newest N-1 "
                     "others, deleting older ones. Default: keep all.", lower_bound=1)
flags.DEFINE_integer("top_k", None, "How many classes top_k_classes and top_k_scores "
                     "give. Default: min(5, number of classes).", lower_bound=1)
flags.DEFINE_list("warmup_images", None, "Image files for the warm-up requests. Default: "
                  "the photos shipped in savedmodels/warmup_images.")
flags.DEFINE_boolean("replay_warmup", True, "Load the export and answer its warm-up "
                     "requests, as TF Serving does when it loads the version.")
flags.mark_flag_as_required("export_base")


def export():
    """Runs the export the flags describe; returns the new version's path."""
    # Imported here so that --help answers without loading TensorFlow.
    from savedmodels import saved_model, sources, versions

    source = sources.load_source(
        model_dir=FLAGS.model_dir, keras_file=FLAGS.keras_file, model=FLAGS.model,
        weights=FLAGS.weights, preprocessing=FLAGS.preprocessing, labels=FLAGS.labels,
    )
    model_name = FLAGS.model_name or source.name
    for path in FLAGS.warmup_images or []:
        if not os.path.isfile(path):
            raise ValueError(f"--warmup_images: {path!r}: no such file")

    def write(folder):
        saved_model.write_saved_model(
            folder, source.model, source.preprocessing, source.class_names, model_name,
            top_k=FLAGS.top_k, warmup_images=FLAGS.warmup_images,
            replay_warmup=FLAGS.replay_warmup,
        )

    return versions.write_version(
        FLAGS.export_base, model_name, write,
        version=FLAGS.version, keep_versions=FLAGS.keep_versions,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        path = export()
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    logging.info("exported %s", path)
    print(path)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
