r"""Exports a ResNet classifier as a SavedModel that TF Serving loads as it is.

  python -m keras_resnet.savedmodels.export --model_dir=/tmp/resnet56 --export_base=/srv/models
  keras-resnet-export --model=resnet50 --weights=imagenet --export_base=/srv/models

writes /srv/models/<model_name>/<version>/ with the signatures serving_default
(encoded images), predict_tensor (pixels) and classify (tf.Examples, for TF
Serving's Classify API), class names as an asset and TF Serving warm-up
requests. The version appears in one rename, so a server watching
--export_base never loads half of it.

The flags are defined by `define_flags`, which `run` calls, so that importing
this module (as the trainer does for `export_model_dir`) defines none.
"""

import os

from absl import app, flags, logging

from keras_resnet import inference
from keras_resnet.arguments import list_flags_in_help
from keras_resnet.savedmodels import saved_model, sources, versions

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """Defines every flag of the export binary on `flag_values`."""
    f = dict(flag_values=flag_values)
    flags.DEFINE_string("model_dir", None, "A trainer's model_dir: exports its model.keras, "
                        "or its newest checkpoint, with its preprocessing.json and labels.txt.",
                        **f)
    flags.DEFINE_string("keras_file", None, "A .keras model to export. Inside a model_dir "
                        "(model.keras or checkpoints/ckpt-*.keras) that model_dir's "
                        "preprocessing.json and labels.txt are used.", **f)
    flags.DEFINE_string("model", None, "A zoo model name (e.g. resnet20, resnet50) to "
                        "export with --weights.", **f)
    flags.DEFINE_string("weights", None, "With --model: cifar10, imagenet or the path of a "
                        "weights file (.weights.h5, .h5, .keras).", **f)
    flags.DEFINE_string("preprocessing", None, "An EvalPreprocessing json (the trainer's "
                        "preprocessing.json). Default: the model_dir's; ImageNet evaluation "
                        "preprocessing for ImageNet zoo models. Required for CIFAR zoo "
                        "models and lone .keras files.", **f)
    flags.DEFINE_string("labels", None, "Class names, one per line in class order. Default: "
                        "the model_dir's labels.txt, else CIFAR-10 names for 10-class CIFAR "
                        "models, else class numbers.", **f)
    flags.DEFINE_string("export_base", None, "The local or mounted folder TF Serving "
                        "watches; the SavedModel goes to <export_base>/<model_name>/<version>. "
                        "Not a URL (gs://, s3://): publication is an atomic folder rename.", **f)
    flags.DEFINE_string("model_name", None, "The served model's name. Default: the zoo name, "
                        "the model_dir's folder name or the .keras file's name.", **f)
    flags.DEFINE_integer("version", None, "The version to write; it must not exist. "
                         "Default: one more than the highest version.", lower_bound=1, **f)
    flags.DEFINE_integer("keep_versions", None, "Keep the new version and the N-1 versions "
                         "just below it, deleting older ones; versions above it are never "
                         "deleted. Default: keep all.", lower_bound=1, **f)
    flags.DEFINE_integer("top_k", None, "How many classes top_k_classes and top_k_scores "
                         "give. Default: min(5, number of classes).", lower_bound=1, **f)
    flags.DEFINE_list("warmup_images", None, "Image files for the warm-up requests. "
                      "Default: the photos shipped in keras_resnet/savedmodels/warmup_images.", **f)
    flags.DEFINE_enum("optimize_for_inference", "none", list(inference.MODES),
                      "Serve a faster graph of the model: fold_bn folds batch norm into "
                      "the convolutions (same outputs to float32 rounding); fold_bn_bf16 "
                      "also stores weights and computes in bfloat16 (float32 outputs; "
                      "check its top-1 first: benchmarks/inference_accuracy.py).", **f)
    flags.DEFINE_boolean("replay_warmup", True, "Load the export and answer its warm-up "
                         "requests, as TF Serving does when it loads the version.", **f)
    flags.mark_flag_as_required("export_base", flag_values=flag_values)


def export(source, export_base, model_name=None, version=None, keep_versions=None,
           top_k=None, warmup_images=None, replay_warmup=True):
    """Writes a sources.Source as a new version; returns its path."""
    model_name = model_name or source.name
    saved_model.check_exportable(source.model, source.preprocessing, source.class_names, top_k)
    for path in warmup_images or []:
        if not os.path.isfile(path):
            raise ValueError(f"--warmup_images: {path!r}: no such file")

    def write(folder):
        saved_model.write_saved_model(
            folder, source.model, source.preprocessing, source.class_names, model_name,
            top_k=top_k, warmup_images=warmup_images, replay_warmup=replay_warmup,
        )

    return versions.write_version(
        export_base, model_name, write, version=version, keep_versions=keep_versions
    )


def export_model_dir(model_dir, export_base, **options):
    """Exports a trainer's model_dir, named after its folder (see `export`)."""
    return export(sources.load_source(model_dir=model_dir), export_base, **options)


def export_from_flags(flag_values=FLAGS):
    """Runs the export that parsed flags describe; returns the new version's path."""
    fv = flag_values
    versions.check_export_base(fv.export_base)  # before the (slow) model loads
    source = sources.load_source(
        model_dir=fv.model_dir, keras_file=fv.keras_file, model=fv.model,
        weights=fv.weights, preprocessing=fv.preprocessing, labels=fv.labels,
        optimize_for_inference=fv.optimize_for_inference,
    )
    return export(
        source, fv.export_base, model_name=fv.model_name, version=fv.version,
        keep_versions=fv.keep_versions, top_k=fv.top_k, warmup_images=fv.warmup_images,
        replay_warmup=fv.replay_warmup,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        path = export_from_flags()
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    logging.info("exported %s", path)
    print(path)


def run():
    define_flags()
    list_flags_in_help(FLAGS)
    app.run(main)


if __name__ == "__main__":
    run()
