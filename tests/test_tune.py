"""tune: tiny searches on a slice of the real CIFAR-10 copy. Hyperband's
continued trials and --train_best; a kill -9 mid-trial resumed without
repeating finished trials; the test split never read; flag errors."""

import collections
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest
from absl import app, flags
from conftest import shared_cifar10

from keras_resnet import model_dir as model_dir_lib
from keras_resnet.trainers import tune

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# validation_split holds a fixed random 10% of the training images out.
TRAIN_PER_CLASS = 510
TEST_PER_CLASS = 5
TINY = ["--batch_size=32", "--steps_per_epoch=2", "--epochs_between_evals=10", "--seed=1"]


@pytest.fixture(scope="module")
def slices(tmp_path_factory):
    """Two tars of the shared archive's first 510 train images per class, in
    its own layout. "with_test" adds 5 real test images per class;
    "corrupt_test" has one undecodable file per test class instead, so a run
    that reads the test split fails."""
    folder = tmp_path_factory.mktemp("cifar")
    paths = {"with_test": str(folder / "with_test.tar"),
             "corrupt_test": str(folder / "corrupt_test.tar")}
    counts = collections.Counter()
    limits = {"train": TRAIN_PER_CLASS, "test": TEST_PER_CLASS}
    with tarfile.open(shared_cifar10()) as src, \
            tarfile.open(paths["with_test"], "w") as with_test, \
            tarfile.open(paths["corrupt_test"], "w") as corrupt_test:
        for member in src:
            parts = member.name.split("/")  # cifar10/<split>/<class>/NNNN.jpg
            if not member.isfile() or len(parts) != 4:
                continue
            split, cls = parts[1], parts[2]
            if counts[split, cls] >= limits[split]:
                continue
            counts[split, cls] += 1
            data = src.extractfile(member).read()
            with_test.addfile(member, io.BytesIO(data))
            if split == "train":
                corrupt_test.addfile(member, io.BytesIO(data))
            elif counts[split, cls] == 1:
                junk = b"not a JPEG"
                info = tarfile.TarInfo(member.name)
                info.size = len(junk)
                corrupt_test.addfile(info, io.BytesIO(junk))
    assert sum(n for (split, _), n in counts.items() if split == "train") == 10 * TRAIN_PER_CLASS
    return paths


@pytest.fixture(scope="module")
def tune_flags():
    """tune's flags on absl's global FLAGS for this module, removed after."""
    before = set(FLAGS)
    tune.define_flags()
    yield
    for name in set(FLAGS) - before:
        delattr(FLAGS, name)


def parse(*args):
    FLAGS.unparse_flags()
    FLAGS(["tune", *args])


@pytest.fixture
def short_eval(monkeypatch):
    """Evaluations cover the first 2 batches (64 images) of their split, not
    all of it: the same code path in a fraction of the time."""
    real_get = tune.Datasets.get

    def get(self, run):
        dataset = real_get(self, run)
        return dataclasses.replace(
            dataset, num_eval=2 * 32, eval=lambda batch, ctx=None: dataset.eval(batch, ctx).take(2))

    monkeypatch.setattr(tune.Datasets, "get", get)


@pytest.fixture
def extracted(monkeypatch):
    """Names of the tar members whose contents are read, in order."""
    names = []
    real = tarfile.TarFile.extractfile

    def extractfile(self, member):
        names.append(getattr(member, "name", member))
        return real(self, member)

    monkeypatch.setattr(tarfile.TarFile, "extractfile", extractfile)
    return names


def read_json(*parts):
    with open(os.path.join(*parts)) as f:
        return json.load(f)


def read_csv(tune_dir):
    import csv

    with open(os.path.join(tune_dir, tune.CSV_FILE)) as f:
        return list(csv.DictReader(f))


def test_hyperband_search_continues_trials_then_train_best_retrains_on_the_test_split(
        tune_flags, slices, tmp_path, short_eval, extracted, capsys):
    tune_dir = str(tmp_path / "tune")
    args = [*TINY, f"--data_dir={slices['with_test']}", f"--tune_dir={tune_dir}",
            "--tuner=hyperband", "--epochs_per_trial=2", "--hyperband_factor=2",
            "--max_trials=3", "--lr_range=0.01,0.5", "--shortcuts=A,B"]
    parse(*args)
    tune.main([])
    out = capsys.readouterr().out
    # Progress: each trial, its values and its score.
    for trial in "012":
        assert f"Trial {trial} ({int(trial) + 1} of at most 3) starts: base_learning_rate=" in out
        assert f"Trial {trial} done in" in out
    assert "val_accuracy=" in out and "best so far: trial" in out
    # The search never read a test image; only train members.
    assert extracted and not [n for n in extracted if "/test/" in n]

    # Hyperband: trials 0 and 1 train 1 epoch; trial 2 continues the better
    # one from its checkpoint (step 2) to epoch 2 (step 4).
    rows = {r["trial"]: r for r in read_csv(tune_dir)}
    assert set(rows) == {"0", "1", "2"}
    assert [rows[t]["epochs"] for t in "012"] == ["1", "1", "2"]
    past = rows["2"]["continues"]
    assert past in ("0", "1")
    assert rows["2"]["base_learning_rate"] == rows[past]["base_learning_rate"]
    assert read_json(tune_dir, "trials", past, "results.json")["step"] == 2
    continued = read_json(tune_dir, "trials", "2", "results.json")
    assert continued["step"] == 4 and continued["eval_split"] == "validation"
    metrics = [json.loads(line) for line in open(os.path.join(tune_dir, "trials", "2",
                                                              "metrics.jsonl"))]
    assert [m["step"] for m in metrics] == [2, 4]  # epoch 1 is the past trial's

    # The table is sorted by the objective, best first; best_hyperparameters
    # names the best trial and the train flags that reproduce it.
    scores = [float(r["val_accuracy"]) for r in read_csv(tune_dir)]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    best = read_json(tune_dir, tune.BEST_FILE)
    first = read_csv(tune_dir)[0]
    assert best["trial"] == first["trial"] and best["score"] == pytest.approx(scores[0])
    assert set(best["hyperparameters"]) == {"base_learning_rate", "shortcut"}
    assert f"--shortcut={best['hyperparameters']['shortcut']}" in best["train_flags"]
    table = open(os.path.join(tune_dir, tune.TABLE_FILE)).read()
    assert "| rank | trial | base_learning_rate | shortcut | epochs |" in table
    assert "test split is never read" in table

    # --train_best: the search is done (no trial runs again); the best values
    # train on the whole training split and are tested on the test split.
    extracted.clear()
    parse(*args, "--train_best", "--train_steps=2")
    tune.main([])
    out = capsys.readouterr().out
    assert "starts:" not in out and "Resuming the search: 3 trial(s) finished" in out
    result = read_json(tune_dir, tune.BEST_MODEL_DIR, "results.json")
    assert result["eval_split"] == "test" and result["step"] == 2
    run_config = read_json(tune_dir, tune.BEST_MODEL_DIR, "run_config.json")
    assert run_config["shortcut"] == best["hyperparameters"]["shortcut"]
    assert not run_config["validation_split"]
    assert [n for n in extracted if "/test/" in n]


def test_killed_search_resumes_without_repeating_finished_trials(slices, tmp_path):
    """The real binary, killed with SIGKILL during trial 1 (the second), after
    its first checkpoint; a rerun keeps trial 0 and resumes trial 1 from its
    checkpoint. The data's test split is undecodable: the search never reads
    it."""
    tune_dir = str(tmp_path / "tune")
    args = [sys.executable, "-m", "keras_resnet.trainers.tune", *TINY, "--train_steps=4",
            f"--data_dir={slices['corrupt_test']}", f"--tune_dir={tune_dir}",
            "--tuner=random", "--max_trials=2",
            "--lr_range=0.01,0.5", "--weight_decay_range=1e-5,1e-3"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    trial0, trial1 = (os.path.join(tune_dir, "trials", t) for t in "01")
    deadline = time.time() + 300
    while model_dir_lib.latest_checkpoint(trial1) is None:
        if first.poll() is not None:
            pytest.fail("the search ended before trial 1's first checkpoint:\n"
                        + first.stdout.read()[-3000:])
        assert time.time() < deadline, "no checkpoint of trial 1 in 300 s"
        time.sleep(0.1)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    assert os.path.exists(os.path.join(trial0, tune.TRIAL_FILE))
    assert not os.path.exists(os.path.join(trial1, tune.TRIAL_FILE)), "trial 1 had finished"
    kept = {name: open(os.path.join(trial0, name), "rb").read()
            for name in (tune.TRIAL_FILE, "metrics.jsonl", "results.json")}

    rerun = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
    log = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, log[-3000:]
    assert "Resuming the search: 1 trial(s) finished" in rerun.stdout
    assert "Trial 0 (" not in rerun.stdout and "Trial 1 (2 of at most 2) starts" in rerun.stdout
    assert "from step 2" in log  # trial 1 resumed from its checkpoint
    for name, data in kept.items():
        assert open(os.path.join(trial0, name), "rb").read() == data, name
    assert read_json(trial1, tune.TRIAL_FILE)["resumed"] is True
    assert read_json(trial1, "results.json")["eval_split"] == "validation"
    rows = read_csv(tune_dir)
    assert sorted(r["trial"] for r in rows) == ["0", "1"]
    assert all(r["status"] == "COMPLETED" for r in rows)


def test_bayesian_search_proposes_from_its_gaussian_process_after_the_random_points(
        tune_flags, tmp_path):
    """keras-tuner's Bayesian oracle over tune's space (scores made up here:
    the trials' training is what the other tests run)."""
    pytest.importorskip("sklearn", reason="--tuner=bayesian needs keras-tuner[bayesian]")
    from keras_resnet.trainers import search_space

    parse(f"--tune_dir={tmp_path}", "--tuner=bayesian", "--num_initial_points=2",
          "--max_trials=4", "--lr_range=0.01,0.5", "--weight_decay_range=1e-5,1e-3",
          "--shortcuts=A,B,C", "--depths=20,32")
    space = search_space.from_flags(FLAGS)
    oracle = tune.make_oracle(space)
    oracle._set_project_dir(str(tmp_path), "search")
    seen = []
    for _ in range(4):
        trial = oracle.create_trial("tuner0")
        values = trial.hyperparameters.values
        assert 0.01 <= values["base_learning_rate"] <= 0.5
        assert values["shortcut"] in "ABC" and values["model"] in ("resnet20", "resnet32")
        seen.append(values)
        oracle.update_trial(trial.trial_id, {"val_accuracy": values["base_learning_rate"]})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert oracle.create_trial("tuner0").status == "STOPPED"
    assert len({json.dumps(v, sort_keys=True) for v in seen}) == 4


@pytest.mark.parametrize("args, message", [
    (["--base_learning_rate=0.1", "--weight_decay=1e-4", "--shortcut=A", "--model=resnet20"],
     "The search space is empty: every hyperparameter is fixed (by a trainer flag"),
    (["--lr_range=0.1"], "The search space is empty"),
    (["--shortcuts=A,D"], "--shortcuts=A,D: 'D' is unknown; choose from A, B, C"),
    (["--shortcuts="], "--shortcuts is empty"),
    (["--depths=20,30"], "--depths=20,30: '30' is not a CIFAR ResNet depth"),
    (["--lr_range=0.5,0.1"], "--lr_range=0.5,0.1: low must be < high"),
    (["--lr_range=0.1,0.2,0.3"], "give low,high"),
    (["--weight_decay_range=0,1e-3"], "a log-scale range needs low > 0"),
    (["--batch_sizes=64,x"], "'x' is not an integer"),
    (["--label_smoothings=0,1"], "'1' must be in [0, 1)"),
    (["--model=resnet56", "--depths=20,32"], "--depths and --model both set model"),
    (["--shortcuts=A,B", "--tuner=hyperband"], "--tuner=hyperband needs --epochs_per_trial"),
    (["--shortcuts=A,B", "--skip_eval"], "--skip_eval"),
    (["--shortcuts=A,B", "--export_dir=/tmp/x"], "add --train_best"),
    (["--shortcuts=A,B", "--data_dir=/nonexistent/cifar.tar"], "/nonexistent/cifar.tar"),
])
def test_flag_errors_name_the_flag(tune_flags, tmp_path, args, message):
    parse(f"--tune_dir={tmp_path}", *args)
    with pytest.raises(app.UsageError) as error:
        tune.main([])
    assert message in str(error.value)


def test_without_search_flags_tune_searches_its_default_space(tune_flags, tmp_path):
    """As keras-tuner's HyperResNet: learning rate, weight decay, shortcuts,
    and depths for a CIFAR net; a trainer flag fixes its hyperparameter."""
    from keras_resnet.trainers import search_space

    def space(*args):
        tune_dir = tmp_path / str(len(os.listdir(tmp_path)))
        parse(f"--tune_dir={tune_dir}", "--data_dir=/nonexistent/cifar.tar", *args)
        with pytest.raises(app.UsageError, match="nonexistent"):  # not "empty": searched
            tune.main([])
        return read_json(tune_dir, tune.CONFIG_FILE)["space"]

    assert space() == {
        "base_learning_rate": {"kind": "log", "values": [0.02, 0.5]},
        "weight_decay": {"kind": "log", "values": [1e-5, 1e-3]},
        "shortcut": {"kind": "choice", "values": ["A", "B", "C"]},
        "model": {"kind": "choice", "values": ["resnet20", "resnet32", "resnet44", "resnet56"]},
    }
    assert set(space("--model=resnet50")) == {"base_learning_rate", "weight_decay", "shortcut"}
    assert set(space("--shortcut=A", "--base_learning_rate=0.2")) == {"weight_decay", "model"}
    assert set(space("--shortcuts=A,B")) == {"shortcut"}  # a search flag: only what it names
    # --help (tune's docstring) lists the default space.
    doc = " ".join(tune.__doc__.split())
    for flag, values in search_space.DEFAULT_SPACE.items():
        assert f"--{flag}={','.join(values)}" in doc


def test_a_default_search_on_a_small_copy_holds_out_a_tenth(tune_flags, cifar_slice, tmp_path,
                                                             capsys):
    """200 training images: trials are scored on 20 held out, and every
    output says so. No search flag: the default space (less the depth,
    which --model fixes)."""
    tune_dir = str(tmp_path / "tune")
    parse(*TINY, "--model=resnet20", "--train_steps=2", "--max_trials=1",
          f"--data_dir={cifar_slice}", f"--tune_dir={tune_dir}")
    tune.main([])
    out = capsys.readouterr().out
    assert ("Searching tune's default space (no search flag given): base_learning_rate "
            "log-uniform in [0.02, 0.5]; weight_decay log-uniform in [1e-05, 0.001]; "
            "shortcut {A, B, C} by random search") in out
    assert "scored on 20 of the 200 training images held out (180 left to train on)" in out
    assert "Trial 0 done in" in out
    table = open(os.path.join(tune_dir, tune.TABLE_FILE)).read()
    assert "scored on 20 of the 200 training images held out (the test split" in table
    best = read_json(tune_dir, tune.BEST_FILE)
    assert best["split"] == "validation (20 of the 200 training images held out; test split " \
        "not read)"
    assert read_json(tune_dir, "trials", "0", "results.json")["eval_examples"] == 20


def test_max_trials_below_one_is_a_flag_error(tune_flags, tmp_path):
    with pytest.raises(flags.IllegalFlagValueError, match="max_trials"):
        parse(f"--tune_dir={tmp_path}", "--shortcuts=A,B", "--max_trials=0")


def test_a_tune_dir_resumes_only_its_own_search(tune_flags, tmp_path):
    bad_data = "--data_dir=/nonexistent/cifar.tar"  # stops main right after the config check
    parse(f"--tune_dir={tmp_path}", "--shortcuts=A,B", bad_data)
    with pytest.raises(app.UsageError, match="nonexistent"):
        tune.main([])
    parse(f"--tune_dir={tmp_path}", "--shortcuts=A,C", bad_data, "--max_trials=20")
    with pytest.raises(app.UsageError, match="holds another search .*space.shortcut"):
        tune.main([])


def test_the_binary_reports_a_bad_choice_and_exits_1(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "keras_resnet.trainers.tune", f"--tune_dir={tmp_path}", "--shortcuts=A,D"],
        cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True,
        text=True, timeout=120)
    assert proc.returncode == 1
    assert "--shortcuts=A,D: 'D' is unknown; choose from A, B, C" in proc.stderr
    assert not os.listdir(tmp_path)
