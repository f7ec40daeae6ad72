"""Every strategy that needs no GPU, as users run it: the default
steps_per_execution (16 steps a call), two calls per epoch, an evaluation
after every epoch whose last call is shorter, a SIGTERM mid-run and a
resume, in float32 and mixed_bfloat16; and a worker killed under
MultiWorkerMirrored. On a slice of the real CIFAR-10 copy.

mixed_float16 is a GPU policy: CPUs run its float16 convolutions in
software, 160x slower than mixed_bfloat16 here, so it gets the short
one-device run of test_train instead."""

import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import keras
import numpy as np
import pytest

from benchmarks.common import free_ports
from conftest import cifar_subset
from keras_resnet import model_dir as model_dir_lib
from keras_resnet.trainers import callbacks as cb
from keras_resnet.trainers import prepare
from keras_resnet.trainers.data import InputOptions, load_dataset
from keras_resnet.trainers.data.streaming import evaluate_ten_crop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 8
STEPS_PER_CALL = 16  # the trainer's default --steps_per_execution
EPOCH = 2 * STEPS_PER_CALL
EPOCHS = 3
EVAL_IMAGES = 300  # 38 eval steps at batch 8: calls of 16, 16 and 6
ARGS = ["--model=resnet20", f"--batch_size={BATCH}", f"--steps_per_epoch={EPOCH}",
        f"--train_steps={EPOCHS * EPOCH}", "--seed=5"]


@pytest.fixture(scope="module")
def cifar_300(tmp_path_factory):
    """20 train and 30 test images per class of the shared copy."""
    return cifar_subset(tmp_path_factory.mktemp("cifar") / "cifar10-300.tar.gz", 20,
                        EVAL_IMAGES // 10)


def _launch(strategy, policy, data, model_dir, workers=None, flags=ARGS):
    """The trainer's processes for one configuration (two for multi-worker)."""
    args = [sys.executable, "-m", "keras_resnet.trainers.train", *flags, f"--data_dir={data}",
            f"--model_dir={model_dir}", f"--mixed_precision={policy}",
            f"--distribution_strategy={strategy}"]
    if strategy == "mirrored":
        args.append("--num_cpu_replicas=2")
    envs = [{}]
    if workers:
        envs = [{"TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                          "task": {"type": "worker", "index": i}})}
                for i in range(len(workers))]
    return [subprocess.Popen(args, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for env in envs]


def _wait_for_checkpoint(model_dir, procs, step, timeout=400):
    deadline = time.time() + timeout
    while time.time() < deadline:
        latest = model_dir_lib.latest_checkpoint(model_dir)
        if latest and latest[0] >= step:
            return
        for proc in procs:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.1)
    raise AssertionError(f"no checkpoint at step {step} within {timeout} s")


def _saved_model_accuracy(model_dir, data, examples=EVAL_IMAGES, name="cifar10"):
    """Test accuracy of model.keras as saved, computed here without the trainer."""
    model = model_dir_lib.load_trained_model(model_dir)
    dataset = load_dataset(name, data, InputOptions(image_size=32))
    correct = total = 0
    for images, labels, weights in dataset.eval(BATCH):
        predicted = np.argmax(model.predict_on_batch(images), axis=-1)
        correct += int(np.sum((predicted == labels.numpy()) * weights.numpy()))
        total += int(np.sum(weights.numpy()))
    assert total == examples
    return correct / total


CONFIGS = [(strategy, policy)
           for strategy in ("default", "one_device", "mirrored", "multi_worker_mirrored")
           for policy in ("float32", "mixed_bfloat16")]


@pytest.mark.parametrize("strategy,policy", CONFIGS)
def test_strategy_trains_evaluates_survives_sigterm_and_resumes(cifar_300, tmp_path,
                                                                strategy, policy):
    model_dir = str(tmp_path / "run")
    workers = ([f"127.0.0.1:{p}" for p in free_ports(2)]
               if strategy == "multi_worker_mirrored" else None)
    procs = _launch(strategy, policy, cifar_300, model_dir, workers)
    _wait_for_checkpoint(model_dir, procs, EPOCH)
    # Preemption notice to one process (under multi-worker the non-chief):
    # all stop at the same call boundary, and the chief saves that step.
    procs[-1].send_signal(signal.SIGTERM)
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 143, err[-3000:]
    stopped = model_dir_lib.latest_checkpoint(model_dir)[0]
    assert EPOCH < stopped < EPOCHS * EPOCH and stopped % STEPS_PER_CALL == 0
    assert f"Preempted (SIGTERM) at step {stopped}" in outputs[0][1]
    assert not os.path.exists(os.path.join(model_dir, "model.keras"))

    procs = _launch(strategy, policy, cifar_300, model_dir, workers)
    outputs = [p.communicate(timeout=400) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    log = outputs[0][1]
    assert f"(step {stopped})" in log and f"{STEPS_PER_CALL} per call" in log
    replicas = 1 if strategy in ("default", "one_device") else 2
    assert f"{replicas} replicas" in log
    with open(os.path.join(model_dir, "results.json")) as f:
        result = json.load(f)
    assert result["step"] == EPOCHS * EPOCH and result["eval_examples"] == EVAL_IMAGES
    records = cb.read_metrics(os.path.join(model_dir, cb.METRICS_FILE))
    assert [r["step"] for r in records] == [EPOCH * (i + 1) for i in range(EPOCHS)]
    # The hard path ran: several steps in each call, an evaluation every epoch.
    assert records[0]["train_calls"] == EPOCH // STEPS_PER_CALL == 2
    assert all("val_accuracy" in r and np.isfinite(r["val_loss"]) for r in records)
    # What was evaluated is what was saved (replicas' BN statistics averaged).
    assert result["eval_accuracy"] == pytest.approx(
        _saved_model_accuracy(model_dir, cifar_300), abs=1e-6)
    if workers:
        reports = [json.loads(out[out.index("{"):]) for out, _ in outputs]
        assert reports[0]["weights_sha256"] == reports[1]["weights_sha256"]
    keras.mixed_precision.set_global_policy("float32")


def test_a_killed_worker_stops_the_other_and_a_rerun_finishes(cifar_300, tmp_path):
    model_dir = str(tmp_path / "run")
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = _launch("multi_worker_mirrored", "mixed_bfloat16", cifar_300, model_dir, workers)
    _wait_for_checkpoint(model_dir, procs, EPOCH)
    procs[1].kill()
    killed_at = time.time()
    _, err = procs[0].communicate(timeout=300)
    assert procs[0].returncode not in (0, None)
    assert time.time() - killed_at < 180
    assert f"Lost worker 1 ({workers[1]})" in err, err[-3000:]
    assert "Traceback" not in err
    procs[1].communicate()

    procs = _launch("multi_worker_mirrored", "mixed_bfloat16", cifar_300, model_dir, workers)
    outputs = [p.communicate(timeout=400) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    with open(os.path.join(model_dir, "results.json")) as f:
        assert json.load(f)["step"] == EPOCHS * EPOCH



def _cifar_251(tmp_path):
    """A .tar.gz of the shared copy's first 20 train images of each class and
    251 of its test images."""
    subset = cifar_subset(tmp_path / "260.tar.gz", 20, 26)
    data = str(tmp_path / "251.tar.gz")
    with tarfile.open(subset) as src, tarfile.open(data, "w:gz") as out:
        tests = 0
        for member in src:
            tests += "/test/" in member.name
            if tests <= 251 or "/test/" not in member.name:
                out.addfile(member, src.extractfile(member))
    return data


def _ten_crop_accuracy(model_dir, data):
    """10-crop accuracy of model.keras as saved, in this one process."""
    options = InputOptions(image_size=32, ten_crop=True)
    dataset = load_dataset("tfrecord", data, options)
    return evaluate_ten_crop(model_dir_lib.load_trained_model(model_dir), dataset, 10)


@pytest.mark.parametrize("form", ["cifar10", "tfrecord"])
def test_multi_worker_eval_of_a_split_the_workers_share_unevenly(tmp_path, form):
    """251 test images on 2 workers at a global batch of 10: shares of 126
    and 125 made 26 and 25 eval steps, 3 TFRecord eval shards 34 and 17
    (past the 26 the trainer ran: 40 images never counted). Both workers now
    run ceil(251 / 10) = 26 steps, and eval and 10-crop accuracy count each
    image once, as one process computes them from the saved model."""
    data = _cifar_251(tmp_path)
    flags = ["--model=resnet20", "--batch_size=10", "--steps_per_epoch=2", "--train_steps=2",
             "--seed=5"]
    if form == "tfrecord":
        with tarfile.open(data) as tar:
            tar.extractall(tmp_path / "tree", filter="data")
        data = str(tmp_path / "records")
        prepare.prepare(str(tmp_path / "tree" / "cifar10"), data, shards=3, eval_shards=3)
        flags += ["--dataset=tfrecord", "--image_size=32", "--ten_crop"]
    model_dir = str(tmp_path / "run")
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = _launch("multi_worker_mirrored", "float32", data, model_dir, workers, flags)
    outputs = [p.communicate(timeout=400) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    with open(os.path.join(model_dir, "results.json")) as f:
        result = json.load(f)
    assert result["eval_examples"] == 251
    assert result["eval_accuracy"] == pytest.approx(
        _saved_model_accuracy(model_dir, data, 251, form), abs=1e-6)
    if form == "tfrecord":
        assert result["eval_ten_crop_accuracy"] == pytest.approx(
            _ten_crop_accuracy(model_dir, data), abs=1e-6)
