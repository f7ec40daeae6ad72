"""The training binary: strategies, precisions, resume after kill -9, NaN
stop and flag errors, on a 300-image slice of the real CIFAR-10 copy."""

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from benchmarks.common import free_ports
from keras_resnet import model_dir as model_dir_lib
from keras_resnet.trainers import callbacks as cb
from keras_resnet.trainers import optimizers, schedules
from keras_resnet.trainers.data import canonical_name, load_dataset
from keras_resnet.trainers.loop import Run, check_model_dir, train, weights_fingerprint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--model=resnet20", "--batch_size=16", "--steps_per_epoch=3", "--log_steps=1"]


def trainer(*args, env=None, **kwargs):
    """Runs `python -m keras_resnet.trainers.train` and returns the CompletedProcess."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "keras_resnet.trainers.train", *args], cwd=ROOT, env=full_env,
        capture_output=True, text=True, timeout=300, **kwargs,
    )


def results(model_dir):
    with open(os.path.join(model_dir, "results.json")) as f:
        return json.load(f)


def test_default_strategy_trains_and_writes_its_outputs(cifar_slice, tmp_path):
    model_dir = str(tmp_path / "run")
    proc = trainer(*TINY, f"--data_dir={cifar_slice}", f"--model_dir={model_dir}",
                   "--train_steps=6")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "shuffle=True" not in proc.stderr  # no Keras warning on every fit
    assert "images_per_sec" in proc.stdout + proc.stderr
    for name in ("model.keras", "preprocessing.json", "labels.txt", "metrics.jsonl",
                 "results.json", "training_curves.png", "run_config.json"):
        assert os.path.exists(os.path.join(model_dir, name)), name
    result = results(model_dir)
    assert result["step"] == 6 and result["eval_examples"] == 100
    assert 0.0 <= result["eval_accuracy"] <= 1.0
    records = [json.loads(line) for line in open(os.path.join(model_dir, "metrics.jsonl"))]
    assert [r["step"] for r in records] == [3, 6]
    assert all(r["images_per_sec"] > 0 and r["learning_rate"] == pytest.approx(0.1 * 16 / 128)
               for r in records)
    assert model_dir_lib.read_labels(model_dir)[0] == "airplane"
    # The saved model reproduces the reported test accuracy, and eval_loss is
    # its mean test cross-entropy: no L2 penalty, no weight-0 padding counted
    # (100 test images in batches of 16 pad the last one).
    model = model_dir_lib.load_trained_model(model_dir)
    dataset = load_dataset("cifar10", cifar_slice)
    losses, correct = [], 0
    for images, labels, weights in dataset.eval(16):
        probabilities = model(images, training=False)
        kept = weights.numpy() > 0
        # From the logits behind the softmax, as evaluation computes it: a
        # probability that underflows to 0 would make -log(p) infinite.
        losses += list(keras.losses.sparse_categorical_crossentropy(
            labels, probabilities).numpy()[kept])
        correct += int(np.sum(np.argmax(probabilities, -1)[kept] == labels.numpy()[kept]))
    assert len(losses) == 100
    assert result["eval_loss"] == pytest.approx(np.mean(losses), rel=1e-4)
    assert result["eval_accuracy"] == pytest.approx(correct / 100)
    assert model_dir_lib.trained_model_path(model_dir).endswith("model.keras")
    assert model.count_params() == keras.models.load_model(
        model_dir_lib.latest_checkpoint(model_dir)[1]).count_params()


def test_resume_after_kill_9_continues_from_the_saved_step(cifar_slice, tmp_path):
    model_dir = str(tmp_path / "run")
    args = [*TINY, f"--data_dir={cifar_slice}", f"--model_dir={model_dir}",
            "--train_steps=30", "--skip_eval"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "keras_resnet.trainers.train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while model_dir_lib.latest_checkpoint(model_dir) is None and time.time() < deadline:
        time.sleep(0.2)
        assert proc.poll() is None, "the run ended before its first checkpoint"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = model_dir_lib.latest_checkpoint(model_dir)[0]
    assert 3 <= killed_at < 30
    assert not os.path.exists(os.path.join(model_dir, "model.keras"))

    rerun = trainer(*args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"(step {killed_at})" in rerun.stderr
    steps = [json.loads(line)["step"] for line in open(os.path.join(model_dir, "metrics.jsonl"))]
    assert steps[0] == 3 and steps[-1] == 30
    assert results(model_dir)["step"] == 30


def test_mirrored_over_two_cpu_replicas(cifar_slice, tmp_path):
    model_dir = str(tmp_path / "run")
    proc = trainer(*TINY, f"--data_dir={cifar_slice}", f"--model_dir={model_dir}",
                   "--train_steps=3", "--distribution_strategy=mirrored", "--num_cpu_replicas=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 replicas" in proc.stderr
    assert results(model_dir)["eval_examples"] == 100


def test_multi_worker_mirrored_two_processes_end_with_identical_weights(cifar_slice, tmp_path):
    model_dir = str(tmp_path / "run")
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CONFIG": json.dumps(tf_config)}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "keras_resnet.trainers.train", *TINY, f"--data_dir={cifar_slice}",
             f"--model_dir={model_dir}", "--train_steps=3", "--seed=3", "--sync_bn",
             "--distribution_strategy=multi_worker_mirrored"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    reports = [json.loads(out[out.index("{"):]) for out, _ in outputs]
    assert reports[0]["weights_sha256"] == reports[1]["weights_sha256"]
    assert reports[0]["step"] == reports[1]["step"] == 3
    # Only the chief writes; what it wrote is what both computed.
    assert results(model_dir)["weights_sha256"] == reports[0]["weights_sha256"]


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_on_one_device(cifar_slice, tmp_path, policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        run = Run(model="resnet20", model_dir=str(tmp_path / policy), data_dir=cifar_slice,
                  batch_size=16, train_steps=2, steps_per_epoch=2, verbose=0)
        result = train(run, tf.distribute.OneDeviceStrategy("/cpu:0"))
        model = model_dir_lib.load_trained_model(run.model_dir, compile=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert result["step"] == 2 and np.isfinite(result["eval_loss"])
    assert model.get_layer("conv1_conv").compute_dtype == policy.split("_")[1]
    assert model.get_layer("predictions").compute_dtype == "float32"
    loss_scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert loss_scaled == (policy == "mixed_float16")


def test_ema_decay_ends_the_run_with_the_averaged_net(cifar_slice, tmp_path):
    run = Run(model="resnet20", model_dir=str(tmp_path / "ema"), data_dir=cifar_slice,
              batch_size=16, train_steps=6, steps_per_epoch=3, ema_decay=0.5,
              lr_schedule="cosine", verbose=0)
    result = train(run, tf.distribute.OneDeviceStrategy("/cpu:0"))
    checkpoint = keras.models.load_model(model_dir_lib.latest_checkpoint(run.model_dir)[1])
    optimizers.prepare(checkpoint)  # hands the restored averages of BN's statistics back
    averaged = checkpoint.trainable_weights + optimizers.averaged_statistics(checkpoint)
    assert len(averaged) == len(checkpoint.weights) == 59 + 38
    averages = [v.numpy() for v in checkpoint.optimizer._model_variables_moving_average]
    raw = [v.numpy() for v in averaged]
    final_model = model_dir_lib.load_trained_model(run.model_dir)
    final = [v.numpy() for v in final_model.trainable_weights
             + optimizers.averaged_statistics(final_model)]
    # Kernels and BN statistics alike are the averaged net's, not the raw one's.
    assert not all(np.allclose(r, a) for r, a in zip(raw[:59], averages[:59]))
    assert not all(np.allclose(r, a) for r, a in zip(raw[59:], averages[59:]))
    for f, a in zip(final, averages):
        np.testing.assert_allclose(f, a, rtol=1e-6)
    # results.json describes (and evaluated) the averaged net.
    assert result["weights_sha256"] == weights_fingerprint(final_model)
    with pytest.raises(ValueError, match=r"--ema_decay=0.0 \(was 0.5\)"):
        check_model_dir(Run(model="resnet20", model_dir=run.model_dir), chief=True)
    # metrics.jsonl records the rate of the epoch's last update: a cosine
    # schedule's last update is not at rate 0.
    records = cb.read_metrics(os.path.join(run.model_dir, cb.METRICS_FILE))
    schedule = checkpoint.optimizer._learning_rate
    assert [r["learning_rate"] for r in records] == pytest.approx([_lr(schedule, 2), _lr(schedule, 5)])
    assert records[-1]["learning_rate"] > 0


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(cifar_slice, tmp_path):
    model_dir = str(tmp_path / "run")
    proc = trainer(*TINY, f"--data_dir={cifar_slice}", f"--model_dir={model_dir}",
                   "--train_steps=60", "--steps_per_epoch=2", "--base_learning_rate=1e6",
                   "--skip_eval")
    assert proc.returncode == 1
    assert "loss became NaN or infinite at step" in proc.stderr
    kept = model_dir_lib.latest_checkpoint(model_dir)
    assert kept is not None and kept[1] in proc.stderr
    weights = keras.models.load_model(kept[1]).get_weights()
    assert all(np.isfinite(w).all() for w in weights)
    assert not os.path.exists(os.path.join(model_dir, "model.keras"))


@pytest.mark.parametrize("args,message", [
    (["--batch_size=15", "--distribution_strategy=mirrored", "--num_cpu_replicas=2"],
     "--batch_size=15 does not divide by the 2 replicas"),
    (["--batch_size=0"], "--batch_size=0 must be > 0"),
    (["--label_smoothing=1.5"], "--label_smoothing=1.5 must be in [0, 1)"),
    (["--ema_decay=-0.1"], "--ema_decay=-0.1 must be in [0, 1)"),
    (["--model=resnet21"], "--model=resnet21: value should be one of"),
    (["--num_cpu_replicas=2"], "--num_cpu_replicas=2 needs --distribution_strategy=mirrored"),
    (["--mixed_precision=float8"], "--mixed_precision=float8: value should be one of"),
    (["--dataset=cifar100x"], "--dataset='cifar100x' is not a TFDS dataset"),
])
def test_flag_errors_name_the_flag(tmp_path, args, message):
    proc = trainer(f"--model_dir={tmp_path}", "--data_dir=unused", *args)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr  # a usage error, not a crash


def test_imagenet_is_the_name_people_type_for_imagenet2012():
    assert canonical_name("imagenet") == canonical_name("ImageNet") == "imagenet2012"
    assert load_dataset("imagenet", use_synthetic_data=True).name == "synthetic-imagenet2012"


def test_a_model_dir_resumes_only_its_own_run(tmp_path):
    run = Run(model="resnet20", model_dir=str(tmp_path))
    check_model_dir(run, chief=True)
    check_model_dir(run, chief=True)  # the same run may resume
    other = Run(model="resnet56", model_dir=str(tmp_path), batch_size=64)
    with pytest.raises(ValueError, match=r"--model='resnet56' \(was 'resnet20'\).*--batch_size=64"):
        check_model_dir(other, chief=True)


def test_a_run_recorded_before_a_setting_existed_resumes(tmp_path):
    run = Run(model="resnet20", model_dir=str(tmp_path))
    check_model_dir(run, chief=True)
    record = tmp_path / "run_config.json"
    saved = json.loads(record.read_text())
    del saved["train_preprocessing"]
    record.write_text(json.dumps(saved))
    check_model_dir(run, chief=True)
    saved["model"] = "resnet56"
    record.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"--model='resnet20' \(was 'resnet56'\)"):
        check_model_dir(run, chief=True)


def _lr(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_paper_cifar_schedule():
    s = schedules.build("paper", base_lr=0.1, total_steps=64_000, steps_per_epoch=400,
                        batch_size=128, cifar=True, depth=20)
    # Updates 0..31,999 run at 0.1: exactly the paper's 32k iterations.
    assert [_lr(s, t) for t in (0, 31_999, 32_000, 47_999, 48_000)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001])
    assert schedules.default_steps(True, 400, 128) == 64_000
    # Twice the batch: twice the rate, boundaries at the same epochs.
    s = schedules.build("paper", base_lr=0.1, total_steps=32_000, steps_per_epoch=200,
                        batch_size=256, cifar=True, depth=20)
    assert [_lr(s, t) for t in (15_999, 16_000)] == pytest.approx([0.2, 0.02])


def test_paper_warm_up_for_resnet110():
    s = schedules.build("paper", base_lr=0.1, total_steps=64_000, steps_per_epoch=400,
                        batch_size=128, cifar=True, depth=110)
    assert [_lr(s, t) for t in (0, 399, 400, 31_999, 32_000)] == pytest.approx(
        [0.01, 0.01, 0.1, 0.1, 0.01])


def test_imagenet_schedule_scales_with_batch_and_warms_up_linearly():
    s = schedules.build("paper", base_lr=0.1, total_steps=120 * 10, steps_per_epoch=10,
                        batch_size=512, cifar=False, depth=50, warmup_epochs=5)
    assert _lr(s, 49) == pytest.approx(0.2)
    assert _lr(s, 0) == pytest.approx(0.2 / 50)
    assert [_lr(s, t) for t in (299, 300, 600, 900)] == pytest.approx([0.2, 0.02, 0.002, 0.0002])
    cosine = schedules.build("cosine", base_lr=0.1, total_steps=100, steps_per_epoch=10,
                             batch_size=256, cifar=False, depth=50)
    assert _lr(cosine, 0) == pytest.approx(0.1) and _lr(cosine, 100) == pytest.approx(0.0)


def test_schedules_survive_a_checkpoint_round_trip():
    s = schedules.build("paper", base_lr=0.1, total_steps=64_000, steps_per_epoch=400,
                        batch_size=128, cifar=True, depth=110)
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(s))
    assert [_lr(restored, t) for t in (0, 400, 32_001)] == pytest.approx([0.01, 0.1, 0.01])


def test_degradation_trains_plain_and_residual_nets_and_draws_them(cifar_slice, tmp_path):
    base = str(tmp_path / "degradation")
    proc = subprocess.run(
        [sys.executable, "-m", "keras_resnet.trainers.degradation", "--depths=20", "--batch_size=16",
         "--train_steps=2", "--steps_per_epoch=1", f"--data_dir={cifar_slice}",
         f"--model_dir={base}"],
        cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("plain20", "resnet20"):
        assert results(os.path.join(base, name))["step"] == 2
    plain = keras.models.load_model(os.path.join(base, "plain20", "model.keras"))
    assert not any(layer.name.endswith("_add") for layer in plain.layers)
    table = open(os.path.join(base, "degradation.md")).read()
    assert "| plain20 | 2 | 2 |" in table and "| resnet20 | 2 | 2 |" in table
    assert os.path.getsize(os.path.join(base, "degradation.png")) > 10_000


def test_a_resumed_run_rebuilds_its_schedule_from_changed_flags(cifar_slice, tmp_path):
    """A cosine run extended with more steps and another rate trains on at
    the new schedule's rates (not at the old one's end, 0.0), and says so."""
    first = Run(model="resnet20", model_dir=str(tmp_path / "run"), data_dir=cifar_slice,
                batch_size=16, train_steps=20, steps_per_epoch=20, lr_schedule="cosine",
                skip_eval=True, verbose=0)
    train(first, tf.distribute.get_strategy())
    longer = dataclasses.replace(first, train_steps=60, base_learning_rate=0.4)
    check_model_dir(longer, chief=True)
    train(longer, tf.distribute.get_strategy())
    records = cb.read_metrics(os.path.join(first.model_dir, cb.METRICS_FILE))
    rebuilt = schedules.build("cosine", base_lr=0.4, total_steps=60, steps_per_epoch=20,
                              batch_size=16, cifar=True, depth=20)
    assert [r["step"] for r in records] == [20, 40, 60]
    assert [r["learning_rate"] for r in records[1:]] == pytest.approx(
        [_lr(rebuilt, 39), _lr(rebuilt, 59)])
    assert min(r["learning_rate"] for r in records[1:]) > 0  # the old schedule ended at 0.0
    config = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert config["schedule"]["train_steps"] == 60
    assert config["schedule_changes"] == [{"step": 20, "train_steps": 60, "base_learning_rate": 0.4}]


def test_files_reach_the_disk_before_their_name(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")))
    replace = os.replace

    def checked_replace(src, dst):
        assert os.path.realpath(src) in synced, "renamed into place before fsync"
        replace(src, dst)

    monkeypatch.setattr(os, "replace", checked_replace)
    model_dir_lib.write_json(str(tmp_path / "results.json"), {"step": 1})
    assert synced[-1] == os.path.realpath(tmp_path)  # and the rename itself
    assert json.loads((tmp_path / "results.json").read_text()) == {"step": 1}


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(cifar_slice, tmp_path, caplog):
    run = Run(model="resnet20", model_dir=str(tmp_path / "run"), data_dir=cifar_slice,
              batch_size=16, train_steps=6, steps_per_epoch=3, skip_eval=True, verbose=0)
    caplog.set_level(logging.INFO, logger="absl")
    train(run, tf.distribute.get_strategy())
    newest = model_dir_lib.latest_checkpoint(run.model_dir)[1]
    with open(newest, "r+b") as f:  # a copy cut short
        f.truncate(os.path.getsize(newest) // 2)
    result = train(dataclasses.replace(run, train_steps=9), tf.distribute.get_strategy())
    assert result["step"] == 9
    assert f"Cannot load checkpoint {newest}" in caplog.text
    assert "Resuming from" in caplog.text and "(step 3)" in caplog.text


def test_a_deterministic_run_killed_halfway_ends_as_an_uninterrupted_one(cifar_slice, tmp_path):
    """With --seed and --deterministic, kill -9 and a rerun change nothing:
    the resumed run continues the data stream where the checkpoint left it."""
    def args(name):
        return [*TINY, f"--data_dir={cifar_slice}", f"--model_dir={tmp_path / name}",
                "--steps_per_epoch=6", "--train_steps=12", "--seed=7", "--deterministic",
                "--skip_eval"]

    whole = trainer(*args("whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]

    model_dir = str(tmp_path / "killed")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "keras_resnet.trainers.train", *args("killed")], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while model_dir_lib.latest_checkpoint(model_dir) is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert model_dir_lib.latest_checkpoint(model_dir)[0] == 6
    assert not os.path.exists(os.path.join(model_dir, "model.keras"))
    rerun = trainer(*args("killed"))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "(step 6)" in rerun.stderr
    assert results(model_dir)["weights_sha256"] == results(str(tmp_path / "whole"))["weights_sha256"]
