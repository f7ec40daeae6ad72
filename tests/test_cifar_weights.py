"""Publishing a CIFAR-10 run as package weights, and using them
(trainers.publish, keras_resnet.cifar_utils)."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_resnet
from benchmarks import table6_report, zoo_table
from keras_resnet import cifar_utils
from keras_resnet import model_dir as model_dir_lib
from keras_resnet import weights as weights_lib
from keras_resnet.preprocessing import EvalPreprocessing
from keras_resnet.trainers.loop import weights_fingerprint
from conftest import shared_cifar10
from keras_resnet.savedmodels import sources
from keras_resnet.trainers.data import cifar10
from keras_resnet.trainers.publish import CHECK_IMAGES, publish

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def finished_run(folder, photo, model="resnet20", seed=0):
    """A model_dir as trainers.train leaves it, with a mixed-precision model."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        trained = keras_resnet.get_model(model, weights=None, classes=10)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    rng = np.random.default_rng(seed)
    trained.set_weights([rng.normal(0, 0.1, w.shape) for w in trained.get_weights()])
    trained.save(folder / model_dir_lib.MODEL_FILE)
    mean = photo("coffee", 32)
    EvalPreprocessing("cifar", 32, mean).save(str(folder / model_dir_lib.PREPROCESSING_FILE))
    model_dir_lib.write_labels(str(folder), cifar_utils.CLASS_NAMES)
    results = {"model": model, "dataset": "cifar10", "step": 64000, "eval_split": "test",
               "eval_accuracy": 0.5, "eval_examples": 10000,
               "weights_sha256": weights_fingerprint(trained)}
    (folder / "results.json").write_text(json.dumps(results))
    return trained, mean


@pytest.fixture
def published(tmp_path, photo, monkeypatch):
    run, out = tmp_path / "run", tmp_path / "pretrained"
    run.mkdir()
    trained, mean = finished_run(run, photo)
    path, _ = publish(str(run), str(out), shared_cifar10())
    monkeypatch.setattr(weights_lib, "SHIPPED_DIR", str(out))
    cifar_utils.mean_image.cache_clear()
    yield trained, mean, path
    cifar_utils.mean_image.cache_clear()


def test_publish_refuses_a_run_evaluated_on_held_out_training_images(tmp_path, photo):
    run = tmp_path / "run"
    run.mkdir()
    finished_run(run, photo)
    results = json.loads((run / "results.json").read_text())
    (run / "results.json").write_text(json.dumps({**results, "eval_split": "validation"}))
    with pytest.raises(ValueError, match="not on the test set.*without --validation_split"):
        publish(str(run), str(tmp_path / "pretrained"), shared_cifar10())
    assert not (tmp_path / "pretrained").exists()


def test_published_weights_are_the_trained_ones_in_float32(published, photo):
    trained, mean, path = published
    model = keras_resnet.ResNet20(weights=path)
    assert all(w.dtype == "float32" for w in model.weights)
    x = np.stack([photo(name, 32) for name in ("chelsea", "astronaut", "rocket")])
    np.testing.assert_allclose(cifar_utils.mean_image(), mean, atol=1e-3)
    inputs = cifar_utils.preprocess_input(x)
    np.testing.assert_allclose(inputs, x - mean, atol=1e-3)
    np.testing.assert_allclose(model.predict(inputs, verbose=0),
                               trained.predict(inputs, verbose=0), atol=0.05)


def test_the_zoo_table_quotes_the_published_test_error(published):
    assert weights_lib.cifar10_results("resnet20")["eval_accuracy"] == 0.5
    assert zoo_table.pretrained("resnet20") == "cifar10: 50.00% test error"
    assert zoo_table.pretrained("resnet56") == "—"  # no shipped weights


def test_export_of_the_shipped_weights_needs_no_preprocessing_flag(published):
    source = sources.load_source(model="resnet20", weights="cifar10")
    assert source.preprocessing.kind == "cifar"
    np.testing.assert_allclose(source.preprocessing.mean_image, published[1], atol=1e-3)
    assert source.class_names == list(cifar_utils.CLASS_NAMES)


def test_preprocess_input_channels_first_and_tensors(published, photo):
    x = photo("chelsea", 32)[None]
    last = cifar_utils.preprocess_input(x)
    first = cifar_utils.preprocess_input(np.transpose(x, (0, 3, 1, 2)), "channels_first")
    np.testing.assert_allclose(np.transpose(first, (0, 2, 3, 1)), last)
    tensor = cifar_utils.preprocess_input(keras.ops.convert_to_tensor(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(tensor), last)


def test_preprocess_input_names_the_expected_shape(published, photo):
    with pytest.raises(ValueError, match=r"shape \(224, 224, 3\).*\(32, 32, 3\).*resize"):
        cifar_utils.preprocess_input(photo("chelsea", 224)[None])


def test_decode_predictions():
    scores = np.eye(10, dtype="float32")[[3, 8]] * 0.9 + 0.01
    top = cifar_utils.decode_predictions(scores, top=2)
    assert [row[0][:2] for row in top] == [(3, "cat"), (8, "ship")]
    assert len(top[0]) == 2 and top[0][0][2] > top[0][1][2]
    with pytest.raises(ValueError, match=r"preds has shape \(2, 1000\)"):
        cifar_utils.decode_predictions(np.zeros((2, 1000)))


def test_without_the_mean_file_the_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(weights_lib, "SHIPPED_DIR", str(tmp_path))
    cifar_utils.mean_image.cache_clear()
    try:
        with pytest.raises(ValueError, match="EvalPreprocessing.load"):
            cifar_utils.preprocess_input(np.zeros((1, 32, 32, 3)))
    finally:
        cifar_utils.mean_image.cache_clear()


def test_publish_refuses_what_is_not_a_finished_cifar_run(tmp_path, photo):
    data = shared_cifar10()
    with pytest.raises(ValueError, match="holds no finished run"):
        publish(str(tmp_path), str(tmp_path / "out"), data)
    finished_run(tmp_path, photo)
    results = json.loads((tmp_path / "results.json").read_text())
    (tmp_path / "results.json").write_text(json.dumps({**results, "weights_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="not the ones its results.json evaluated"):
        publish(str(tmp_path), str(tmp_path / "out"), data)
    (tmp_path / "results.json").write_text(json.dumps({**results, "model": "resnet1202"}))
    with pytest.raises(ValueError, match="trained resnet1202 on cifar10; .* for: resnet110, "
                                         "resnet20, resnet32, resnet44, resnet56"):
        publish(str(tmp_path), str(tmp_path / "out"), data)
    assert not (tmp_path / "out").exists()


def test_publish_binary_needs_an_explicit_output_dir(tmp_path):
    """Installed from a wheel, the package's own folder is site-packages: the
    binary writes only where it is told."""
    proc = subprocess.run(
        [sys.executable, "-m", "keras_resnet.trainers.publish", f"--model_dir={tmp_path}"],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 1
    assert "Flag --output_dir must have a value other than None" in proc.stderr


def test_publish_records_the_float32_accuracy_of_what_it_ships(published):
    _, mean, path = published
    check = weights_lib.cifar10_results("resnet20")["float32_check"]
    images, labels = cifar10.load_arrays(shared_cifar10(), "test")
    assert check["test_images"] == CHECK_IMAGES
    scores = keras_resnet.ResNet20(weights=path).predict(
        images[:CHECK_IMAGES] - mean, batch_size=500, verbose=0)
    assert check["accuracy"] == np.mean(scores.argmax(axis=1) == labels[:CHECK_IMAGES])


def test_publish_binary_needs_the_data_the_run_was_evaluated_on(tmp_path, photo):
    finished_run(tmp_path, photo)
    proc = subprocess.run(
        [sys.executable, "-m", "keras_resnet.trainers.publish", f"--model_dir={tmp_path}",
         f"--output_dir={tmp_path / 'out'}", f"--data_dir={tmp_path / 'missing'}"],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 1
    assert f"data_dir='{tmp_path / 'missing'}' does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", weights_lib.shipped_cifar10())
def test_shipped_weights_reproduce_their_recorded_accuracy(name):
    """weights="cifar10" + cifar_utils.preprocess_input give the float32
    accuracy that publish recorded on the first test images of the shared
    copy (benchmarks/shipped_cifar10.py scores all 10,000)."""

    check = weights_lib.cifar10_results(name)["float32_check"]
    images, labels = cifar10.load_arrays(shared_cifar10(), "test")
    n = check["test_images"]
    model = keras_resnet.get_model(name, weights="cifar10")
    scores = model.predict(cifar_utils.preprocess_input(images[:n]), batch_size=500, verbose=0)
    accuracy = float(np.mean(scores.argmax(axis=1) == labels[:n]))
    assert abs(accuracy - check["accuracy"]) <= 2 / n  # a prediction or two on a near tie


def test_shipped_resnet20_loads_headless_and_exports():
    features = keras_resnet.ResNet20(weights="cifar10", include_top=False, pooling="avg")
    full = keras_resnet.ResNet20(weights="cifar10")
    np.testing.assert_array_equal(features.get_layer("conv4_block3_2_conv").get_weights()[0],
                                  full.get_layer("conv4_block3_2_conv").get_weights()[0])
    source = sources.load_source(model="resnet20", weights="cifar10")
    np.testing.assert_allclose(source.preprocessing.mean_image, cifar_utils.mean_image())


def _table6_driver(tmp_path, python_body, **env):
    """Runs benchmarks/table6_runs.sh with a `python` that only runs python_body,
    so the driver's choices show without training anything."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text("#!/bin/sh\n" + python_body)
    (fake / "python").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}", **env)
    script = os.path.join(ROOT, "benchmarks", "table6_runs.sh")

    def run(runs, **more_env):
        return subprocess.run(["bash", script, str(runs)], env=dict(env, **more_env),
                              capture_output=True, text=True, timeout=60)
    return run


def _write_checkpoint(model_dir, step, text):
    path = model_dir_lib.checkpoint_path(str(model_dir), step)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_table6_driver_does_not_retrain_a_net_that_ships(tmp_path):
    """A fresh machine has no model_dir for a net that finished on another one:
    its committed results stand, and the driver goes on to the next net."""
    shipped = weights_lib.shipped_cifar10()
    assert shipped
    driver = _table6_driver(tmp_path, "echo training \"$@\"\nexit 3\n")
    proc = driver(tmp_path / "runs",
                  DEPTHS=" ".join(name.removeprefix("resnet") for name in shipped))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in shipped:
        assert f"{name} finished already (benchmarks/results/table6/{name}/results.json)" \
            in proc.stdout
    assert "starts" not in proc.stdout and not (tmp_path / "runs" / f"{shipped[0]}.log").exists()

    # Table 6's net that does not ship starts training.
    proc = driver(tmp_path / "runs", DEPTHS="1202")
    assert proc.returncode == 3 and "resnet1202 starts" in proc.stdout
    log = (tmp_path / "runs" / "resnet1202.log").read_text()
    assert "keras_resnet.trainers.train --model=resnet1202 " in log and " --seed=1 " in log

    # Another seed of a net that ships is a run of its own.
    proc = driver(tmp_path / "seed2", DEPTHS=shipped[0].removeprefix("resnet"), SEED="2")
    assert proc.returncode == 3 and f"{shipped[0]} starts" in proc.stdout
    assert " --seed=2 " in (tmp_path / "seed2" / f"{shipped[0]}.log").read_text()


def test_table6_report_commits_the_newest_checkpoint_of_a_net_in_training(tmp_path):
    """What a fresh machine needs to continue a run lives in the committed copy,
    one checkpoint at a time, and goes once the net has finished."""
    run, copy = tmp_path / "resnet44", tmp_path / "copy" / "resnet44"
    for step in (400, 800):
        _write_checkpoint(run, step, f"step {step}")
    (run / "metrics.jsonl").write_text('{"step": 800}\n')
    (tmp_path / "resnet44.log").write_text("Epoch 2/160\n")
    table6_report.copy_run(str(run), str(copy))
    assert os.listdir(copy / "checkpoints") == ["ckpt-00000800.keras"]
    assert (copy / "checkpoints" / "ckpt-00000800.keras").read_text() == "step 800"
    assert (copy / "train.log").read_text() == "Epoch 2/160\n"

    behind = tmp_path / "behind" / "resnet44"  # a machine that holds an older part of the run
    _write_checkpoint(behind, 400, "step 400")
    (behind / "metrics.jsonl").write_text('{"step": 400}\n')
    table6_report.copy_run(str(behind), str(copy))
    assert os.listdir(copy / "checkpoints") == ["ckpt-00000800.keras"]
    assert (copy / "metrics.jsonl").read_text() == '{"step": 800}\n'

    (run / "results.json").write_text("{}")
    table6_report.copy_run(str(run), str(copy))
    assert not (copy / "checkpoints").exists()
    assert (copy / "results.json").exists()


def test_table6_report_shows_the_spread_after_the_last_learning_rate_drop():
    """One run's end point against the epochs around it: the raw net's test
    error over the epochs after step 48,000, and nothing before them."""
    tested = [{"step": step, "val_accuracy": acc} for step, acc in
              [(47600, 0.50), (48000, 0.60), (48400, 0.89), (48800, 0.88), (49200, 0.87)]]
    phase = table6_report.final_phase(tested)["final_phase"]
    assert phase["epochs"] == 3
    np.testing.assert_allclose([phase["mean_error"], phase["sd_error"], phase["min_error"],
                                phase["max_error"]], [12.0, 1.0, 11.0, 13.0], rtol=1e-6)
    assert table6_report.final_phase(tested[:3]) == {}
    row = {"depth": 32, "paper_error": 7.51, "finished": False, "step": 49200,
           "latest_error": 13.0, "final_phase": phase}
    assert "| 12.00 ± 1.00 (11.00-13.00, 3 epochs) | training: step 49,200" \
        in table6_report.table([row])


def test_table6_report_scores_a_committed_run_from_shipped_weights_only_if_they_are_its(
        tmp_path, monkeypatch):
    """A finished run that this machine no longer holds is exported from the
    weights that ship; a run from another seed, whose weights do not ship,
    shows its trainer's eval and no served figure, rather than seed 1's."""
    scored = []

    def served_accuracy(source, data_dir):
        scored.append(source)
        return 0.75, 10000
    monkeypatch.setattr(table6_report, "served_accuracy", served_accuracy)
    name = weights_lib.shipped_cifar10()[-1]
    depth = int(name.removeprefix("resnet"))
    shipped = os.path.join(ROOT, "benchmarks", "results", "table6", name)
    row, records = table6_report.read_run(shipped, depth, "unused", committed=True)
    assert row["scored_from"] == "shipped float32 weights" and row["served_error"] == 25.0
    assert len(scored) == 1 and len(records) == 160

    other_seed = tmp_path / name
    shutil.copytree(shipped, other_seed)
    results = json.loads((other_seed / "results.json").read_text())
    (other_seed / "results.json").write_text(json.dumps({**results, "weights_sha256": "0" * 64}))
    row, _ = table6_report.read_run(str(other_seed), depth, "unused", committed=True)
    assert len(scored) == 1 and row["finished"] and "served_error" not in row
    assert row["trainer_error"] == 100 * (1 - results["eval_accuracy"])
    assert "its weights do not ship: not exported" in table6_report.table([row])
    assert set(table6_report.targets([row]).values()) == {None}


def test_table6_driver_continues_a_run_from_its_committed_checkpoint(tmp_path):
    """A machine that lost the run, or holds an older part of it, seeds its
    model_dir from the committed copy (checkpoint, metrics, run_config, log);
    one that holds a newer checkpoint keeps its own."""
    copy = tmp_path / "committed" / "resnet44"
    _write_checkpoint(copy, 48000, "checkpoint")
    for name, text in [("metrics.jsonl", '{"step": 48000}\n'), ("run_config.json", "{}\n"),
                       ("train.log", "Epoch 120/160\n")]:
        (copy / name).write_text(text)
    driver = _table6_driver(
        tmp_path,
        "for a; do case $a in --model_dir=*) d=${a#--model_dir=};; esac; done\n"
        "echo trained from $(ls $d/checkpoints)\n",
        DEPTHS="44", COMMITTED=str(tmp_path / "committed"))
    runs = tmp_path / "runs"
    _write_checkpoint(runs / "resnet44", 12000, "older")
    (runs / "resnet44" / "metrics.jsonl").write_text('{"step": 12000}\n')
    proc = driver(runs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"resnet44 continues from the committed {copy}/checkpoints/ckpt-00048000.keras" \
        in proc.stdout
    assert (runs / "resnet44" / "checkpoints" / "ckpt-00048000.keras").read_text() == "checkpoint"
    assert (runs / "resnet44" / "metrics.jsonl").read_text() == '{"step": 48000}\n'
    assert (runs / "resnet44" / "run_config.json").exists()
    assert (runs / "resnet44.log").read_text() == \
        "Epoch 120/160\ntrained from ckpt-00012000.keras ckpt-00048000.keras\n"

    _write_checkpoint(runs / "resnet44", 48400, "newer")
    proc = driver(runs)
    assert proc.returncode == 0 and "continues from the committed" not in proc.stdout
    assert (runs / "resnet44.log").read_text().endswith(
        "trained from ckpt-00012000.keras ckpt-00048000.keras ckpt-00048400.keras\n")
