"""SavedModels for TF Serving, end to end, on tiny real models and real photos.

Three exports through the export binary's flags: a trained ResNet-20 from a
model_dir, a ResNet-18 (ImageNet stem) from --model with a weights file, and
a mixed_bfloat16 model from --keras_file. They are checked in fresh
processes, through saved_model_cli, and with gRPC and REST requests answered
as tensorflow_model_server answers them (savedmodels.predict_api; the server
binary does not install here).
"""

import base64
import functools
import io
import json
import os
import re
import subprocess
import sys
import threading

import keras
import numpy as np
import pytest
import skimage.data
import tensorflow as tf
from absl import app, flags
from PIL import Image
from tensorflow.core.protobuf import fingerprint_pb2
from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting as fingerprinting_pywrap
from tensorflow_serving.apis import predict_pb2

import keras_resnet
from keras_resnet import cifar_utils
from keras_resnet import model_dir as model_dir_lib
from keras_resnet.preprocessing import EvalPreprocessing, decode_image
from keras_resnet.savedmodels import export, predict_api, signatures, sources, versions, warmup

BIN = os.path.dirname(sys.executable)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
JPEGS = ("chelsea", "astronaut", "coffee", "rocket")
LABELS = ["cat", "astronaut", "coffee", "rocket", "camera",
          "coins", "horse", "moon", "page", "text"]
TOLERANCE = 1e-5


@functools.lru_cache(maxsize=None)
def photo_bytes(name, fmt="JPEG"):
    """A skimage.data photo, encoded as a client would send it."""
    return photo_array_bytes(getattr(skimage.data, name)(), fmt)


def photo_array_bytes(array, fmt="PNG"):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def jpegs():
    return [photo_bytes(name) for name in JPEGS]


def other_formats():
    return [photo_bytes("coffee", "PNG"), photo_bytes("chelsea", "GIF"),
            photo_bytes("rocket", "BMP")]


def keras_probabilities(model, preprocessing, images):
    """What the Keras model says about encoded images: the reference."""
    batch = tf.stack([preprocessing(decode_image(image)) for image in images])
    return keras.ops.convert_to_numpy(model(batch, training=False)).astype(np.float32)


def run_export(*args):
    """The export binary's flags and export, in this process."""
    flag_values = flags.FlagValues()
    export.define_flags(flag_values)
    flag_values(["keras-resnet-export", *args])
    return export.export_from_flags(flag_values)


def set_bn_statistics(model, batch):
    """One training-mode pass: with bn_momentum=0 the BN statistics become
    those of real images, so the outputs are far from one-hot."""
    model(batch, training=True)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """A ResNet-20 trained for a few SGD steps, in a trainer-style model_dir."""
    keras.utils.set_random_seed(0)
    crops = np.stack([
        np.asarray(Image.open(io.BytesIO(photo_bytes(name))).resize((64, 64)))[r:r + 32, c:c + 32]
        for name in JPEGS for r in (0, 32) for c in (0, 32)
    ])
    preprocessing = EvalPreprocessing("cifar", 32, crops.mean(axis=0))
    x = tf.stack([preprocessing(crop) for crop in crops])
    model = keras_resnet.ResNet20(bn_momentum=0.0)
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    model.fit(x, np.arange(len(crops)) % 10, batch_size=8, epochs=1, verbose=0)
    model_dir = str(tmp_path_factory.mktemp("runs") / "resnet20_photos")
    os.makedirs(model_dir)
    model.save(os.path.join(model_dir, model_dir_lib.MODEL_FILE))
    preprocessing.save(os.path.join(model_dir, model_dir_lib.PREPROCESSING_FILE))
    model_dir_lib.write_labels(model_dir, LABELS)
    export_base = str(tmp_path_factory.mktemp("serving"))
    path = run_export(f"--model_dir={model_dir}", f"--export_base={export_base}")
    return dict(model=model_dir_lib.load_trained_model(model_dir), preprocessing=preprocessing,
                model_dir=model_dir, export_base=export_base, path=path)


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """A ResNet-18 (ImageNet stem, 224x224, 1000 classes) from --model and a weights file."""
    keras.utils.set_random_seed(1)
    model = keras_resnet.ResNet18(bn_momentum=0.0)
    preprocessing = EvalPreprocessing("imagenet", 224)
    set_bn_statistics(model, tf.stack([preprocessing(decode_image(b)) for b in jpegs()]))
    weights = str(tmp_path_factory.mktemp("weights") / "resnet18.weights.h5")
    model.save_weights(weights)
    path = run_export("--model=resnet18", f"--weights={weights}", "--top_k=3",
                      f"--export_base={tmp_path_factory.mktemp('serving')}")
    return dict(model=model, preprocessing=preprocessing, path=path)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, cifar):
    """A ResNet-20 body and a classifier built under mixed_bfloat16, whose
    output is therefore bfloat16, from --keras_file."""
    keras.utils.set_random_seed(2)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        body = keras_resnet.ResNet20(include_top=False, pooling="avg", bn_momentum=0.0)
        inputs = keras.Input((32, 32, 3))
        outputs = keras.layers.Dense(10, activation="softmax")(body(inputs))
        model = keras.Model(inputs, outputs, name="mixed_resnet20")
    finally:
        keras.config.set_dtype_policy("float32")
    preprocessing = cifar["preprocessing"]
    set_bn_statistics(model, tf.stack([preprocessing(decode_image(b)) for b in jpegs()]))
    folder = tmp_path_factory.mktemp("mixed")
    keras_file = str(folder / "mixed.keras")
    model.save(keras_file)
    preprocessing_file = str(folder / "cifar_preprocessing.json")
    preprocessing.save(preprocessing_file)
    path = run_export(f"--keras_file={keras_file}", f"--preprocessing={preprocessing_file}",
                      f"--export_base={folder / 'serving'}")
    return dict(model=model, preprocessing=preprocessing, path=path)


@pytest.fixture(scope="module")
def loaded(cifar):
    return tf.saved_model.load(cifar["path"])


# --- what the export writes -------------------------------------------------


def test_export_layout(cifar):
    assert cifar["path"] == os.path.join(cifar["export_base"], "resnet20_photos", "1")
    for name in ["saved_model.pb", "variables", "assets/labels.txt", warmup.WARMUP_FILE]:
        assert os.path.exists(os.path.join(cifar["path"], name)), name
    with open(os.path.join(cifar["path"], "assets", "labels.txt")) as f:
        assert f.read().splitlines() == LABELS


def test_saved_model_cli_show_lists_signatures_and_names(cifar):
    shown = subprocess.run(
        [os.path.join(BIN, "saved_model_cli"), "show", "--all", "--dir", cifar["path"]],
        capture_output=True, text=True, env=ENV, check=True,
    ).stdout
    blocks = {name: (body, method) for name, body, method in re.findall(
        r"signature_def\['(\w+)'\]:\n(.*?)Method name is: ([^\n]*)", shown, re.S)}
    expected_inputs = {
        "serving_default": ("image_bytes", "DT_STRING", "(-1)"),
        "predict_tensor": ("pixels", "DT_FLOAT", "(-1, 32, 32, 3)"),
        "classify": ("inputs", "DT_STRING", "(-1)"),
    }
    predict_outputs = {
        "probabilities": ("DT_FLOAT", "(-1, 10)"), "classes": ("DT_INT64", "(-1)"),
        "class_names": ("DT_STRING", "(-1)"), "top_k_classes": ("DT_INT64", "(-1, 5)"),
        "top_k_scores": ("DT_FLOAT", "(-1, 5)"),
    }
    # What TF Serving's Classify API checks (classifier.cc).
    classify_outputs = {"classes": ("DT_STRING", "(-1, 5)"), "scores": ("DT_FLOAT", "(-1, 5)")}
    for name, (alias, dtype, shape) in expected_inputs.items():
        body, method = blocks[name]
        classify = name == "classify"
        assert method == f"tensorflow/serving/{'classify' if classify else 'predict'}"
        expected_outputs = classify_outputs if classify else predict_outputs
        inputs, outputs = body.split("contains the following output(s):")
        assert re.findall(r"inputs\['(\w+)'\] tensor_info:\n\s+dtype: (\w+)\n\s+shape: (.*)\n",
                          inputs) == [(alias, dtype, shape)]
        found = re.findall(r"outputs\['(\w+)'\] tensor_info:\n\s+dtype: (\w+)\n\s+shape: (.*)\n",
                           outputs)
        assert {a: (d, s) for a, d, s in found} == expected_outputs


# The README's offline command: the image goes in as a bytes literal of \x
# escapes (--input_exprs splits on ";" and only takes Python literals).
SAVED_MODEL_CLI_RUN = r"""
IMAGE=$(python -c "import sys; print(''.join('\\\\x%02x' % b for b in open(sys.argv[1], 'rb').read()))" "$PHOTO")
saved_model_cli run --dir "$EXPORT" --tag_set serve --signature_def serving_default \
  --input_exprs "image_bytes=[b'$IMAGE']"
"""


def test_saved_model_cli_run_answers_a_jpeg_offline(cifar, tmp_path):
    image = photo_bytes("chelsea")
    (tmp_path / "chelsea.jpg").write_bytes(image)
    env = {**ENV, "PATH": BIN + os.pathsep + ENV["PATH"], "PHOTO": str(tmp_path / "chelsea.jpg"),
           "EXPORT": cifar["path"]}
    out = subprocess.run(["bash", "-ec", SAVED_MODEL_CLI_RUN], capture_output=True, text=True,
                         env=env, check=True).stdout
    expected = keras_probabilities(cifar["model"], cifar["preprocessing"], [image])
    top = int(expected.argmax())
    assert re.search(r"Result for output key classes:\n\[(\d+)\]", out).group(1) == str(top)
    assert f"[b'{LABELS[top]}']" in out


FRESH_PROCESS = r"""
import sys
import numpy as np
import tensorflow as tf

results = {}
for path, inputs in zip(sys.argv[2::2], sys.argv[3::2]):
    loaded = tf.saved_model.load(path)
    feeds = np.load(inputs, allow_pickle=True)
    for signature, alias in [("serving_default", "image_bytes"), ("predict_tensor", "pixels"),
                             ("classify", "inputs")]:
        outputs = loaded.signatures[signature](**{alias: tf.constant(feeds[signature])})
        for name, value in outputs.items():
            results[f"{path}|{signature}|{name}"] = value.numpy()
np.savez(sys.argv[1], **results)
"""


def test_fresh_process_signatures_match_keras(cifar, imagenet, mixed, tmp_path):
    exports = [cifar, imagenet, mixed]
    argv = [sys.executable, "-c", FRESH_PROCESS, str(tmp_path / "out.npz")]
    for i, exported in enumerate(exports):
        images = jpegs() + (other_formats() if i == 0 else [])
        pixels = np.stack([exported["preprocessing"].resize(decode_image(b)).numpy()
                           for b in jpegs()])
        feeds = str(tmp_path / f"in{i}.npz")
        np.savez(feeds, serving_default=np.array(images, dtype=object), predict_tensor=pixels,
                 classify=np.array([warmup.tf_example(b) for b in jpegs()], object))
        argv += [exported["path"], feeds]
        exported["images"] = images
    subprocess.run(argv, env=ENV, check=True, capture_output=True)
    results = np.load(tmp_path / "out.npz", allow_pickle=True)

    for exported in exports:
        expected = keras_probabilities(exported["model"], exported["preprocessing"],
                                       exported["images"])
        assert expected.max() < 0.99  # not saturated: the comparison means something
        with open(os.path.join(exported["path"], "assets", "labels.txt")) as f:
            labels = f.read().splitlines()
        for signature in signatures.SIGNATURE_INPUTS:
            reference = expected if signature == "serving_default" else expected[:len(JPEGS)]
            if signature == "classify":
                classes = results[f"{exported['path']}|classify|classes"]
                top = np.argsort(-reference, axis=1)[:, :classes.shape[1]]
                assert [[n.decode() for n in row] for row in classes] == \
                    [[labels[c] for c in row] for row in top]
                np.testing.assert_allclose(results[f"{exported['path']}|classify|scores"],
                                           np.take_along_axis(reference, top, 1),
                                           rtol=0, atol=TOLERANCE)
                continue
            out = {name: results[f"{exported['path']}|{signature}|{name}"]
                   for name in signatures.OUTPUTS}
            assert out["probabilities"].dtype == np.float32
            np.testing.assert_allclose(out["probabilities"], reference, rtol=0, atol=TOLERANCE,
                                       err_msg=f"{exported['path']} {signature}")
            np.testing.assert_array_equal(out["classes"], reference.argmax(axis=1))
            assert [n.decode() for n in out["class_names"]] == [labels[c] for c in out["classes"]]
            k = out["top_k_classes"].shape[1]
            np.testing.assert_array_equal(out["top_k_classes"][:, 0], out["classes"])
            np.testing.assert_allclose(out["top_k_scores"], -np.sort(-reference, axis=1)[:, :k],
                                       rtol=0, atol=TOLERANCE)
    assert results[f"{imagenet['path']}|serving_default|top_k_scores"].shape == (4, 3)


def test_default_class_names(cifar, imagenet, mixed):
    with open(os.path.join(imagenet["path"], "assets", "labels.txt")) as f:
        assert f.read().splitlines() == sources.default_class_names(1000, imagenet["preprocessing"])
    with open(os.path.join(mixed["path"], "assets", "labels.txt")) as f:
        assert f.read().splitlines() == list(cifar_utils.CLASS_NAMES)


def test_mixed_precision_model_exports_float32_outputs(mixed):
    assert mixed["model"].layers[-1].dtype_policy.name == "mixed_bfloat16"
    assert mixed["model"].output.dtype == "bfloat16"
    loaded = tf.saved_model.load(mixed["path"])
    for signature in signatures.SIGNATURE_INPUTS:
        specs = loaded.signatures[signature].structured_outputs
        for name in ["probabilities", "top_k_scores", "scores"]:
            assert name not in specs or specs[name].dtype == tf.float32


# --- errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, message",
    [
        (b"<html>not an image</html>", "image_bytes\\[{i}\\]: not a JPEG, PNG, GIF or BMP image"),
        (photo_bytes("chelsea")[:5000], "image_bytes\\[{i}\\]: cut short"),  # an upload cut off
        (b"", "image_bytes\\[{i}\\]: an empty string"),
    ],
)
def test_corrupt_image_in_a_batch_is_invalid_argument_and_the_next_request_works(
        cifar, loaded, bad, message):
    serve = loaded.signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message.format(i=1)):
        serve(image_bytes=tf.constant([photo_bytes("coffee"), bad]))
    request = predict_pb2.PredictRequest()
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([bad]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=message.format(i=0)):
        predict_api.predict(loaded, request)
    good = serve(image_bytes=tf.constant([photo_bytes("coffee")]))["probabilities"].numpy()
    expected = keras_probabilities(cifar["model"], cifar["preprocessing"], [photo_bytes("coffee")])
    np.testing.assert_allclose(good, expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("signature, alias, empty", [
    ("serving_default", "image_bytes", tf.constant([], tf.string)),
    ("predict_tensor", "pixels", tf.zeros([0, 32, 32, 3])),
    ("classify", "inputs", tf.constant([], tf.string)),
])
def test_empty_batch_is_invalid_argument_naming_the_input(loaded, signature, alias, empty):
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{alias}: an empty batch"):
        loaded.signatures[signature](**{alias: empty})


def test_strips_are_answered_from_their_centre_window(imagenet):
    row = skimage.data.coffee()[200:201, :500]
    strips = [photo_array_bytes(np.tile(row, (1, 4, 1))),  # 1 x 2000
              photo_array_bytes(np.tile(row.transpose(1, 0, 2), (4, 1, 1)))]  # 2000 x 1
    loaded = tf.saved_model.load(imagenet["path"])
    got = loaded.signatures["serving_default"](image_bytes=tf.constant(strips))
    expected = keras_probabilities(imagenet["model"], imagenet["preprocessing"], strips)
    np.testing.assert_allclose(got["probabilities"].numpy(), expected, rtol=0, atol=TOLERANCE)


def test_missing_image_feature_in_a_tf_example_is_invalid_argument(loaded):
    empty = tf.train.Example().SerializeToString()
    with pytest.raises(tf.errors.InvalidArgumentError, match="image/encoded"):
        loaded.signatures["classify"](inputs=tf.constant([empty]))


# --- TF Serving's Classify API ------------------------------------------------


def test_classify_signature_runs_in_tf_servings_loader(cifar):
    """TF Serving loads a SavedModel with the TF1 loader and runs a Classify
    request as a session run of the signature's tensors, after checking its
    method name, input and outputs (classifier.cc)."""
    images = jpegs()
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], cifar["path"])
        signature = meta_graph.signature_def["classify"]
        assert signature.method_name == "tensorflow/serving/classify"
        assert list(signature.inputs) == ["inputs"]
        assert signature.inputs["inputs"].dtype == tf.string.as_datatype_enum
        assert sorted(signature.outputs) == ["classes", "scores"]
        assert signature.outputs["classes"].dtype == tf.string.as_datatype_enum
        assert signature.outputs["scores"].dtype == tf.float32.as_datatype_enum
        classes, scores = session.run(
            [signature.outputs["classes"].name, signature.outputs["scores"].name],
            {signature.inputs["inputs"].name: [warmup.tf_example(b) for b in images]},
        )
    expected = keras_probabilities(cifar["model"], cifar["preprocessing"], images)
    top = np.argsort(-expected, axis=1)[:, :5]
    assert classes.shape == scores.shape == (len(images), 5)
    assert [[n.decode() for n in row] for row in classes] == [[LABELS[c] for c in r] for r in top]
    np.testing.assert_allclose(scores, np.take_along_axis(expected, top, 1), rtol=0,
                               atol=TOLERANCE)
    # The method name was set after saving: fingerprint.pb was rewritten to match.
    written = tf.saved_model.experimental.read_fingerprint(cifar["path"])
    fresh = fingerprint_pb2.FingerprintDef.FromString(
        fingerprinting_pywrap.CreateFingerprintDef(cifar["path"]))
    assert written.saved_model_checksum == fresh.saved_model_checksum


# --- TF Serving's request formats --------------------------------------------


def test_grpc_predict_requests_from_real_images(cifar, loaded):
    images = jpegs()
    expected = keras_probabilities(cifar["model"], cifar["preprocessing"], images)
    pixels = np.stack([cifar["preprocessing"].resize(decode_image(b)).numpy() for b in images])
    for signature, value in [("serving_default", images), ("predict_tensor", pixels),
                             ("classify", [warmup.tf_example(b) for b in images])]:
        request = warmup.predict_request("resnet20_photos", signature, value)
        wire = predict_pb2.PredictRequest.FromString(request.SerializeToString())
        response = predict_api.predict(loaded, wire, version=1)
        response = predict_pb2.PredictResponse.FromString(response.SerializeToString())
        assert response.model_spec.signature_name == signature
        outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
        if signature == "classify":  # TF Serving's Predict runs classify signatures too
            assert sorted(outputs) == ["classes", "scores"]
            assert [n.decode() for n in outputs["classes"][:, 0]] == \
                [LABELS[c] for c in expected.argmax(axis=1)]
            continue
        assert sorted(outputs) == sorted(signatures.OUTPUTS)
        np.testing.assert_allclose(outputs["probabilities"], expected, rtol=0, atol=TOLERANCE)
        assert [n.decode() for n in outputs["class_names"]] == \
            [LABELS[c] for c in expected.argmax(axis=1)]
        assert outputs["top_k_classes"].shape == (len(images), 5)


def test_rest_bodies_from_real_images(cifar, loaded):
    images = [photo_bytes("astronaut"), photo_bytes("rocket")]
    expected = keras_probabilities(cifar["model"], cifar["preprocessing"], images)
    b64 = [{"b64": base64.b64encode(image).decode("ascii")} for image in images]
    row = json.dumps({"instances": [{"image_bytes": value} for value in b64]})
    answer = json.loads(json.dumps(predict_api.predict_json(loaded, row)))
    predictions = answer["predictions"]
    assert [sorted(p) for p in predictions] == [sorted(signatures.OUTPUTS)] * 2
    np.testing.assert_allclose([p["probabilities"] for p in predictions], expected,
                               rtol=0, atol=TOLERANCE)
    assert [p["class_names"] for p in predictions] == [LABELS[c] for c in expected.argmax(1)]
    assert [p["classes"] for p in predictions] == expected.argmax(1).tolist()

    # One input: instances may be its values themselves.
    direct = predict_api.predict_json(loaded, json.dumps({"instances": b64}))
    np.testing.assert_allclose([p["probabilities"] for p in direct["predictions"]], expected,
                               rtol=0, atol=TOLERANCE)

    for columnar in ({"inputs": {"image_bytes": b64}}, {"inputs": b64}):
        answer = json.loads(json.dumps(predict_api.predict_json(loaded, json.dumps(columnar))))
        np.testing.assert_allclose(answer["outputs"]["probabilities"], expected,
                                   rtol=0, atol=TOLERANCE)
        assert answer["outputs"]["class_names"] == [LABELS[c] for c in expected.argmax(1)]


def test_warmup_file_holds_prediction_logs_the_model_answers(cifar):
    path = os.path.join(cifar["path"], warmup.WARMUP_FILE)
    assert os.path.getsize(path) < 100_000
    logs = warmup.read_warmup(cifar["path"])
    assert [log.WhichOneof("log_type") for log in logs] == ["predict_log"] * 4
    requests = [log.predict_log.request for log in logs]
    assert {r.model_spec.signature_name for r in requests} == set(signatures.SIGNATURE_INPUTS)
    assert {r.model_spec.name for r in requests} == {"resnet20_photos"}
    loaded = tf.saved_model.load(cifar["path"])
    for request in requests:
        response = predict_api.predict(loaded, request)
        if request.model_spec.signature_name == "classify":
            assert tf.make_ndarray(response.outputs["scores"]).shape == (1, 5)
            continue
        probabilities = tf.make_ndarray(response.outputs["probabilities"])
        if request.model_spec.signature_name == "serving_default":
            images = list(tf.make_ndarray(request.inputs["image_bytes"]))
            for image in images:  # real photos, not noise
                assert min(decode_image(image).shape[:2]) >= 64
            expected = keras_probabilities(cifar["model"], cifar["preprocessing"], images)
            np.testing.assert_allclose(probabilities, expected, rtol=0, atol=TOLERANCE)
        assert probabilities.shape[1] == 10


# --- versions under a watching reader ----------------------------------------


def test_reexport_while_a_reader_polls_never_shows_a_partial_version(cifar, tmp_path):
    export_base = str(tmp_path)
    model_base = os.path.join(export_base, "resnet20_photos")
    # What the trainer's --export_dir calls.
    first = export.export_model_dir(cifar["model_dir"], export_base, replay_warmup=False)
    assert first == os.path.join(model_base, "1")
    stop = threading.Event()
    seen, problems = {}, []
    image = tf.constant([photo_bytes("chelsea")])

    def read():
        while not (stop.is_set() and 4 in seen):
            newest = versions.versions(model_base)[-1]
            if newest in seen:
                stop.wait(0.01)
                continue
            path = os.path.join(model_base, str(newest))
            try:
                for name in ["saved_model.pb", "variables/variables.index", warmup.WARMUP_FILE]:
                    if not os.path.exists(os.path.join(path, name)):
                        problems.append(f"version {newest} lacks {name}")
                loaded = tf.saved_model.load(path)
                seen[newest] = loaded.signatures["serving_default"](image_bytes=image)["classes"]
            except Exception as error:  # recorded, the test fails below
                problems.append(f"version {newest}: {error!r}")
                seen[newest] = None

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for _ in range(3):
            run_export(f"--model_dir={cifar['model_dir']}", f"--export_base={export_base}",
                       "--noreplay_warmup")
    finally:
        stop.set()
        reader.join(timeout=120)
    assert not problems
    assert 4 in seen and len(seen) >= 2, sorted(seen)  # it saw versions appear
    assert len({int(c[0]) for c in seen.values()}) == 1  # the same model each time
    assert sorted(os.listdir(model_base)) == ["1", "2", "3", "4"]  # no temp folders left
    run_export(f"--model_dir={cifar['model_dir']}", f"--export_base={export_base}",
               "--keep_versions=2", "--noreplay_warmup")
    assert sorted(os.listdir(model_base)) == ["4", "5"]


# --- flags --------------------------------------------------------------------


@pytest.fixture(scope="module")
def flag_files(tmp_path_factory, cifar):
    folder = tmp_path_factory.mktemp("flags")
    (folder / "empty_run").mkdir()
    (folder / "three.txt").write_text("a\nb\nc\n")
    (folder / "bad.json").write_text('{"kind": "cifar"}')
    weights = str(folder / "resnet20.weights.h5")
    cifar["model"].save_weights(weights)
    return dict(folder=str(folder), weights=weights, model_dir=cifar["model_dir"])


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give exactly one of --model_dir, --keras_file or --model"),
        (["--model_dir={model_dir}", "--model=resnet20"], "got --model_dir and --model"),
        (["--model=resnet21", "--weights=imagenet"], "--model=resnet21 .*is unknown; allowed: resnet18"),
        (["--model=resnet20"], "--model=resnet20 needs --weights"),
        (["--model=resnet1202", "--weights=cifar10"], "--weights=cifar10: weights='cifar10' does not exist"),
        (["--model=resnet20", "--weights={folder}/none.h5"], "neither None, a pretrained name"),
        (["--model=resnet20", "--weights={weights}"], "needs --preprocessing"),
        (["--model_dir={model_dir}", "--weights=imagenet"], "--weights='imagenet' only applies"),
        (["--model_dir={folder}/missing"], "--model_dir='.*/missing': no such folder"),
        (["--model_dir={folder}/empty_run"], "--model_dir: model_dir=.* holds neither"),
        (["--keras_file={folder}/missing.keras"], "--keras_file='.*missing.keras': no such file"),
        (["--keras_file={folder}/three.txt"], "must be a .keras file"),
        (["--model_dir={model_dir}", "--preprocessing={folder}/bad.json"],
         "--preprocessing='.*bad.json' is not an EvalPreprocessing json"),
        (["--model_dir={model_dir}", "--labels={folder}/three.txt"],
         "3 class names .* for a model with 10 classes.*--labels"),
        (["--model_dir={model_dir}", "--top_k=11"], "top_k=11 must be between 1 and"),
        (["--model_dir={model_dir}", "--model_name=a/b"], "model_name='a/b'"),
        (["--model_dir={model_dir}", "--warmup_images={folder}/nope.jpg"],
         "--warmup_images: '.*nope.jpg': no such file"),
    ],
)
def test_bad_flags_say_which_flag(flag_files, tmp_path, args, message):
    args = [a.format(**flag_files) for a in args] + [f"--export_base={tmp_path}"]
    with pytest.raises(ValueError, match=message):
        run_export(*args)
    assert not os.listdir(tmp_path)  # nothing published, nothing half written


@pytest.mark.parametrize("args, flag", [
    (["--model=resnet20"], "export_base"),
    (["--export_base=x", "--top_k=0"], "top_k"),
    (["--export_base=x", "--keep_versions=0"], "keep_versions"),
    (["--export_base=x", "--version=-1"], "version"),
])
def test_flag_values_rejected_when_parsed(args, flag):
    with pytest.raises(flags.IllegalFlagValueError, match=f"--{flag}"):
        run_export(*args)


@pytest.mark.parametrize("url", ["gs://bucket/models", "s3://bucket/models"])
def test_export_base_url_is_rejected_before_anything_is_written(flag_files, tmp_path,
                                                                monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=f"--export_base='{url}' is a URL; .*atomic folder rename"):
        run_export(f"--model_dir={flag_files['model_dir']}", f"--export_base={url}")
    assert not os.listdir(tmp_path)  # no folder named "gs:"


def test_explicit_version_must_be_new(cifar):
    with pytest.raises(ValueError, match="version=1 already exists"):
        run_export(f"--model_dir={cifar['model_dir']}", f"--export_base={cifar['export_base']}",
                   "--version=1")


def test_main_turns_errors_into_usage_errors(monkeypatch):
    def fail():
        raise ValueError("--model=resnet20 needs --weights")

    monkeypatch.setattr(export, "export_from_flags", fail)
    with pytest.raises(app.UsageError, match="needs --weights"):
        export.main(["keras-resnet-export"])
    with pytest.raises(app.UsageError, match="unexpected arguments: extra"):
        export.main(["keras-resnet-export", "extra"])


def test_console_script_reports_a_bad_flag(tmp_path):
    done = subprocess.run(
        [os.path.join(BIN, "keras-resnet-export"), "--model=resnet20",
         f"--export_base={tmp_path}"],
        capture_output=True, text=True, env=ENV,
    )
    assert done.returncode == 1
    assert "--model=resnet20 needs --weights" in done.stderr


def test_keras_file_in_a_model_dir_uses_its_preprocessing_and_labels(cifar):
    checkpoint = model_dir_lib.checkpoint_path(cifar["model_dir"], 8)
    model_dir_lib.save_checkpoint(cifar["model"], cifar["model_dir"], 8)
    try:
        source = sources.load_source(keras_file=checkpoint)
    finally:
        os.remove(checkpoint)
    assert source.name == "resnet20_photos"
    assert source.class_names == LABELS
    np.testing.assert_array_equal(source.preprocessing.mean_image,
                                  cifar["preprocessing"].mean_image)
