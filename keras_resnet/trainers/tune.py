r"""Hyperparameter search with keras-tuner over the trainer's own runs.

Each trial is a `trainers.loop.train` run (same input pipelines, strategies,
mixed precision, checkpoints) on the training data less a fixed random 10%
held out (at most 5,000 of an in-memory dataset: CIFAR-10's 45k/5k), and is
scored on that held-out part: the test split is never read.

    python -m keras_resnet.trainers.tune --tuner=random --max_trials=8 \
        --lr_range=0.02,0.5 --weight_decay_range=1e-5,1e-3 --shortcuts=A,B,C \
        --epochs_per_trial=3 --steps_per_epoch=100 \
        --data_dir=../shared/datasets/cifar10-jpeg.tar.gz --tune_dir=/work/runs/tune

Search flags (listed by --helpfull): --lr_range, --weight_decay_range,
--depths, --shortcuts, --variants, --batch_sizes, --label_smoothings,
--warmups. With none of them, tune searches its default space, as
keras-tuner's HyperResNet comes with one: --lr_range=0.02,0.5
--weight_decay_range=1e-5,1e-3 --shortcuts=A,B,C, and --depths=20,32,44,56
when --model is a CIFAR net. A trainer flag given (--shortcut=A,
--model=resnet56) fixes its hyperparameter instead of searching it.

Rerun the same command to resume: finished trials are kept and an
interrupted one resumes from its last checkpoint. Trainer flags set what is
not searched; --train_best then retrains the best values with them (the
full training split and a test evaluation unless --validation_split) into
--model_dir (default tune_dir/best_model) and exports to --export_dir.

    tune_dir/
      tune_config.json           what defines the search; another is refused
      search/                    keras-tuner's oracle state
      trials/<trial_id>/         each trial's model_dir
      results.csv, results.md    every trial, best first
      best_hyperparameters.json  the best trial's values and train flags
"""

import csv
import dataclasses
import io
import json
import os
import shutil
import sys
import time

import keras
import keras_tuner
from absl import app, flags, logging

from keras_resnet import model_dir as model_dir_lib
from keras_resnet.arguments import list_flags_in_help
from keras_resnet.trainers import callbacks as cb
from keras_resnet.trainers import distribution, loop, preemption, search_space
from keras_resnet.trainers import flags as trainer_flags
from keras_resnet.trainers.data import load_dataset
from keras_resnet.trainers.train import check_flags as check_trainer_flags

FLAGS = flags.FLAGS
TUNERS = ("random", "bayesian", "hyperband")
OBJECTIVES = {"val_accuracy": "max", "val_loss": "min"}
CONFIG_FILE = "tune_config.json"
STATE_DIR = "search"
TRIALS_DIR = "trials"
TRIAL_FILE = "trial_result.json"
CSV_FILE = "results.csv"
TABLE_FILE = "results.md"
BEST_FILE = "best_hyperparameters.json"
BEST_MODEL_DIR = "best_model"
# Run fields that change no trial's result: a resumed search may change them.
COSMETIC = ("model_dir", "export_dir", "verbose", "log_steps", "enable_tensorboard",
            "profile_steps", "keep_checkpoints")


def define_flags():
    trainer_flags.define_model_flags()
    trainer_flags.define_data_flags()
    trainer_flags.define_schedule_flags()
    trainer_flags.define_distribution_flags()
    trainer_flags.define_run_flags()
    search_space.define_search_flags()
    flags.DEFINE_string("tune_dir", None,
                        "Search state, trials and results; rerun to resume the search.")
    flags.DEFINE_enum("tuner", "random", list(TUNERS),
                      "keras-tuner oracle: random search, Bayesian optimization "
                      "(Gaussian process) or Hyperband.")
    flags.DEFINE_integer("max_trials", 10,
                         "Trials to run at most (Hyperband: a cap on its brackets).",
                         lower_bound=1)
    flags.DEFINE_integer("executions_per_trial", 1,
                         "Runs per trial, seeded --seed+k; the objective is their mean.",
                         lower_bound=1)
    flags.DEFINE_integer("epochs_per_trial", None,
                         "Epochs of each trial (of --steps_per_epoch steps, or one pass "
                         "over the training images not held out); Hyperband's max epochs. "
                         "Default: trials last --train_steps / --train_epochs.",
                         lower_bound=1)
    flags.DEFINE_enum("objective", "val_accuracy", list(OBJECTIVES),
                      "What the search optimizes, on the validation split held out "
                      "of the training data.")
    flags.DEFINE_integer("hyperband_factor", 3, "Hyperband's reduction factor.", lower_bound=2)
    flags.DEFINE_integer("num_initial_points", None,
                         "Bayesian: random trials before the Gaussian process guides "
                         "(default: 3 per searched hyperparameter).", lower_bound=1)
    flags.DEFINE_bool("train_best", False,
                      "After the search, retrain the best values with the trainer "
                      "flags into --model_dir (default tune_dir/best_model) and "
                      "export to --export_dir if given.")
    flags.mark_flag_as_required("tune_dir")


def check_flags(space):
    """Tune's flag errors, after the trainer's and the search space's."""
    check_trainer_flags()
    if FLAGS.skip_eval:
        raise app.UsageError("--skip_eval: trials are scored by evaluating them; drop it")
    if FLAGS.export_dir and not FLAGS.train_best:
        raise app.UsageError("--export_dir exports the --train_best model: add --train_best")
    if FLAGS.num_initial_points and FLAGS.tuner != "bayesian":
        raise app.UsageError("--num_initial_points is for --tuner=bayesian")
    if FLAGS.tuner == "bayesian":
        try:
            import sklearn  # noqa: F401  keras-tuner's Gaussian process
        except ImportError:
            raise app.UsageError("--tuner=bayesian needs scikit-learn: pip install "
                                 "'keras-tuner[bayesian]'") from None
    if FLAGS.tuner == "hyperband":
        if FLAGS.epochs_per_trial is None:
            raise app.UsageError("--tuner=hyperband needs --epochs_per_trial (its max epochs)")
        if FLAGS.lr_schedule == "cosine":
            raise app.UsageError(
                "--tuner=hyperband continues trials from shorter ones, whose "
                "--lr_schedule=cosine already decayed to 0; use paper or piecewise")


class Datasets:
    """Each data setting loaded once per process: `loop.train` alone would
    decode CIFAR-10 again for every trial."""

    def __init__(self):
        self._loaded = {}

    def get(self, run):
        key = (run.dataset, run.data_dir, run.input_options, run.validation_split,
               run.use_synthetic_data)
        if key not in self._loaded:
            self._loaded[key] = load_dataset(*key)
        return self._loaded[key]


def trial_base(base):
    """The Run every trial starts from: validation split on, and
    --epochs_per_trial in place of the trainer's length flags if given."""
    run = dataclasses.replace(base, validation_split=True, export_dir=None)
    if FLAGS.epochs_per_trial:
        run = dataclasses.replace(run, train_epochs=FLAGS.epochs_per_trial, train_steps=None)
    return run


def trial_length(run):
    if FLAGS.tuner == "hyperband":
        length = f"up to {run.train_epochs} epochs"
    elif run.train_steps:
        return f"{run.train_steps} steps"
    elif run.train_epochs:
        length = f"{run.train_epochs} epochs"
    else:
        return "the paper's schedule"
    return length + (f" of {run.steps_per_epoch} steps" if run.steps_per_epoch else "")


def _flatten(config, prefix=""):
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def search_config(space, run):
    """What defines a search; a tune_dir resumes only the search that made it."""
    trial_run = {k: v for k, v in dataclasses.asdict(run).items() if k not in COSMETIC}
    config = {"tuner": FLAGS.tuner, "objective": FLAGS.objective,
              "executions_per_trial": FLAGS.executions_per_trial,
              "mixed_precision": FLAGS.mixed_precision,
              "space": space.config(), "trial_run": trial_run}
    if FLAGS.tuner == "hyperband":
        config["hyperband_factor"] = FLAGS.hyperband_factor
    if FLAGS.tuner == "bayesian":
        config["num_initial_points"] = FLAGS.num_initial_points
    return json.loads(json.dumps(config))  # tuples as lists, as read back


def check_search_config(tune_dir, config, chief):
    path = os.path.join(tune_dir, CONFIG_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = _flatten(json.load(f))
        new = _flatten(config)
        changed = [k for k in sorted(set(saved) | set(new)) if saved.get(k) != new.get(k)]
        if changed:
            detail = "; ".join(f"{k}: {new.get(k)!r} (was {saved.get(k)!r})" for k in changed)
            raise app.UsageError(
                f"--tune_dir={tune_dir} holds another search ({detail}). Rerun with "
                "its flags to resume it, or use a new --tune_dir.")
    elif chief:
        model_dir_lib.write_json(path, config)


def _write_text(path, text):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)

    model_dir_lib.atomic_write(path, write)


def _read_json(path):
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _show(values):
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in values.items())


def _say(message):
    logging.info("%s", message)
    print(message, flush=True)


class TrainerTuner(keras_tuner.engine.base_tuner.BaseTuner):
    """Runs each trial as `loop.train` runs; the oracle picks the values and
    keeps the search state in tune_dir/search."""

    def __init__(self, oracle, tune_dir, base_run, space, strategy, chief, datasets,
                 executions=1, precision="float32"):
        self.tune_dir = tune_dir
        self.base_run = base_run
        self.space = space
        self.strategy = strategy
        self.chief = chief
        self.datasets = datasets
        self.executions = executions
        self.precision = precision
        if chief:
            directory, project = tune_dir, STATE_DIR
        else:  # every worker draws the same trials (same seed); the chief's state is kept
            directory, project = os.path.join(tune_dir, "workers"), str(strategy.cluster_resolver.task_id)
        super().__init__(oracle, directory=directory, project_name=project)
        if not os.path.exists(self._get_tuner_fname()):
            self.save()  # so that even a search killed in its first trial reloads
        self.oracle.verbose = 0  # progress lines come from on_trial_begin/end

    def trial_dir(self, trial_id, execution):
        folder = os.path.join(self.tune_dir, TRIALS_DIR, str(trial_id))
        return folder if self.executions == 1 else os.path.join(folder, f"execution_{execution}")

    def on_trial_begin(self, trial):
        self._trial_start = time.time()
        values = trial.hyperparameters.values
        shown = _show(search_space.run_values(values))
        if "tuner/epochs" in values:
            shown += f"; epochs {values['tuner/initial_epoch']}->{values['tuner/epochs']}"
            if values.get("tuner/trial_id") is not None:
                shown += f" continuing trial {values['tuner/trial_id']}"
        _say(f"Trial {trial.trial_id} ({len(self.oracle.trials)} of at most "
             f"{self.oracle.max_trials}) starts: {shown}")

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters.values
        run = dataclasses.replace(self.base_run, **search_space.run_values(values))
        if "tuner/epochs" in values:  # Hyperband: train up to its epochs, from its initial one
            run = dataclasses.replace(run, train_epochs=int(values["tuner/epochs"]),
                                      train_steps=None)
        start = time.time()
        results, resumed = [], False
        for k in range(self.executions):
            model_dir = self.trial_dir(trial.trial_id, k)
            resumed |= model_dir_lib.latest_checkpoint(model_dir) is not None
            if values.get("tuner/trial_id") is not None:
                self._continue(values["tuner/trial_id"], k, model_dir)
            seed = None if run.seed is None else run.seed + k
            keras.backend.clear_session()  # a fresh Keras state per model...
            distribution.set_precision(self.precision)  # ...which clears the dtype policy
            result = loop.train(dataclasses.replace(run, model_dir=model_dir, seed=seed),
                                self.strategy, self.chief, dataset=self.datasets.get(run))
            if result.get("nan_step") is not None:
                raise keras_tuner.errors.FailedTrialError(
                    f"the loss became NaN or infinite at step {result['nan_step']} "
                    f"({model_dir})")
            results.append(result)
        metrics = {
            "val_accuracy": sum(r["eval_accuracy"] for r in results) / len(results),
            "val_loss": sum(r["eval_loss"] for r in results) / len(results),
        }
        if self.chief:
            model_dir_lib.write_json(os.path.join(self.tune_dir, TRIALS_DIR, str(trial.trial_id), TRIAL_FILE), {
                "trial": trial.trial_id,
                "hyperparameters": values,
                **metrics,
                "wall_seconds": round(time.time() - start, 1),
                "resumed": resumed,
                "executions": results,
            })
        return metrics

    def _continue(self, past_id, execution, model_dir):
        """Hyperband: start from the last checkpoint of the trial continued."""
        if model_dir_lib.latest_checkpoint(model_dir) is not None or not self.chief:
            return  # this trial already has its own (a resumed search)
        past = model_dir_lib.latest_checkpoint(self.trial_dir(past_id, execution))
        if past is None:
            raise keras_tuner.errors.FailedTrialError(
                f"trial {past_id} left no checkpoint to continue from")
        step, path = past
        target = model_dir_lib.checkpoint_path(model_dir, step)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(path, target)
        metrics = os.path.join(self.trial_dir(past_id, execution), cb.METRICS_FILE)
        if os.path.exists(metrics):
            shutil.copyfile(metrics, os.path.join(model_dir, cb.METRICS_FILE))

    def on_trial_end(self, trial):
        super().on_trial_end(trial)  # the oracle records the trial; state saved
        trial = self.oracle.get_trial(trial.trial_id)
        seconds = time.time() - self._trial_start
        if trial.status == keras_tuner.engine.trial.TrialStatus.COMPLETED:
            best = self.oracle.get_best_trials(1)[0]
            _say(f"Trial {trial.trial_id} done in {seconds:.0f} s: {FLAGS.objective}="
                 f"{trial.score:.4f}; best so far: trial {best.trial_id}, {best.score:.4f}")
        else:
            _say(f"Trial {trial.trial_id} {trial.status.lower()} after {seconds:.0f} s: "
                 f"{(trial.message or '').strip().splitlines()[-1:]}")
            logging.error("Trial %s: %s", trial.trial_id, trial.message)
        if self.chief:
            write_results(self.oracle, self.space, self.tune_dir, self.base_run,
                          held_out(self.datasets.get(self.base_run)))


def make_oracle(space):
    objective = keras_tuner.Objective(FLAGS.objective, OBJECTIVES[FLAGS.objective])
    common = {"objective": objective, "hyperparameters": space.hyperparameters(),
              "seed": FLAGS.seed}
    if FLAGS.tuner == "random":
        return keras_tuner.oracles.RandomSearchOracle(max_trials=FLAGS.max_trials, **common)
    if FLAGS.tuner == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(
            max_trials=FLAGS.max_trials, num_initial_points=FLAGS.num_initial_points, **common)
    oracle = keras_tuner.oracles.HyperbandOracle(
        max_epochs=FLAGS.epochs_per_trial, factor=FLAGS.hyperband_factor, **common)
    oracle.max_trials = FLAGS.max_trials  # Hyperband has no cap of its own
    return oracle


def result_rows(oracle, space, tune_dir):
    """Every trial as a dict, completed ones best first, then the others."""
    completed = keras_tuner.engine.trial.TrialStatus.COMPLETED
    done = sorted((t for t in oracle.trials.values() if t.status == completed),
                  key=lambda t: t.score, reverse=oracle.objective.direction == "max")
    others = sorted((t for t in oracle.trials.values() if t.status != completed),
                    key=lambda t: t.trial_id)
    hyperband = any("tuner/epochs" in t.hyperparameters.values for t in oracle.trials.values())
    rows = []
    for rank, trial in enumerate(done + others, 1):
        values = trial.hyperparameters.values
        info = _read_json(os.path.join(tune_dir, TRIALS_DIR, str(trial.trial_id), TRIAL_FILE))
        row = {"rank": rank if trial.status == completed else None, "trial": trial.trial_id}
        row.update({name: values.get(name) for name in space.names})
        if hyperband:
            row["epochs"] = values.get("tuner/epochs")
            row["continues"] = values.get("tuner/trial_id")
        for metric in OBJECTIVES:
            row[metric] = (trial.metrics.get_last_value(metric)
                           if trial.metrics.exists(metric) else None)
        row["wall_seconds"] = info and info.get("wall_seconds")
        row["status"] = trial.status
        rows.append(row)
    return rows


def _cell(name, value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if name in OBJECTIVES else (
            f"{value:.0f}" if name == "wall_seconds" else f"{value:.4g}")
    return str(value)


def markdown_table(rows):
    if not rows:
        return "(no trials)\n"
    names = list(rows[0])
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(_cell(n, r[n]) for n in names) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def held_out(dataset):
    """What trials are scored on, in words: how many of how many."""
    total = dataset.num_train + dataset.num_eval
    return f"{dataset.num_eval:,} of the {total:,} training images held out"


def write_results(oracle, space, tune_dir, base_run, split):
    """results.csv, results.md and best_hyperparameters.json; returns the
    rows. `split` says what the trials were scored on (`held_out`)."""
    rows = result_rows(oracle, space, tune_dir)
    if rows:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        _write_text(os.path.join(tune_dir, CSV_FILE), text.getvalue())
    header = (f"Trials of the search in {tune_dir}, best {FLAGS.objective} first, scored on "
              f"{split} (the test split is never read).\n\n")
    _write_text(os.path.join(tune_dir, TABLE_FILE), header + markdown_table(rows))
    best = [t for t in oracle.get_best_trials(1)
            if t.status == keras_tuner.engine.trial.TrialStatus.COMPLETED]
    if best:
        trial = best[0]
        values = search_space.run_values(trial.hyperparameters.values)
        best_run = dataclasses.replace(base_run, **values)
        record = {
            "trial": trial.trial_id,
            "objective": FLAGS.objective,
            "score": trial.score,
            "split": f"validation ({split}; test split not read)",
            "hyperparameters": values,
            "fixed": space.fixed,
            "train_flags": search_space.trainer_flags(best_run),
        }
        if "tuner/epochs" in trial.hyperparameters.values:
            record["epochs"] = trial.hyperparameters.values["tuner/epochs"]
        model_dir_lib.write_json(os.path.join(tune_dir, BEST_FILE), record)
    return rows


def train_best(tuner, base, strategy, chief, datasets):
    """Retrains the best trial's values with the trainer flags as given."""
    best = [t for t in tuner.oracle.get_best_trials(1)
            if t.status == keras_tuner.engine.trial.TrialStatus.COMPLETED]
    if not best:
        sys.exit("--train_best: no trial completed, so there is nothing to retrain")
    values = search_space.run_values(best[0].hyperparameters.values)
    run = dataclasses.replace(
        base, **values,
        model_dir=FLAGS.model_dir or os.path.join(FLAGS.tune_dir, BEST_MODEL_DIR),
        export_dir=FLAGS.export_dir)
    _say(f"Training the best values (trial {best[0].trial_id}): {_show(values)} into "
         f"{run.model_dir}")
    keras.backend.clear_session()
    distribution.set_precision(FLAGS.mixed_precision)
    result = loop.train(run, strategy, chief, dataset=datasets.get(run))
    if result.get("nan_step") is not None:
        sys.exit(f"--train_best: the loss became NaN or infinite at step {result['nan_step']}")
    _say(f"Best values retrained: {json.dumps(result)}")
    return result


@preemption.exits_when_preempted
def main(argv):
    del argv
    space = search_space.from_flags(FLAGS)
    check_flags(space)
    try:
        strategy = distribution.from_flags(FLAGS)
        for dimension in space.searched:
            if dimension.name == "batch_size":
                for batch in dimension.values:
                    distribution.check_batch(batch, strategy)
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    chief = distribution.is_chief(strategy)
    if not chief and FLAGS.seed is None:
        raise app.UsageError("A multi-worker search needs --seed: every worker must draw "
                             "the same trials")
    base = dataclasses.replace(loop.Run.from_flags(FLAGS), **space.fixed)
    trials_run = trial_base(base)
    check_search_config(FLAGS.tune_dir, search_config(space, trials_run), chief)
    datasets = Datasets()
    try:
        dataset = datasets.get(trials_run)
    except ValueError as error:  # bad --data_dir: the message says what to fix
        raise app.UsageError(str(error)) from error
    default = "tune's default space (no search flag given): " if space.default else ""
    _say(f"Searching {default}{space.describe()} by {FLAGS.tuner} search: at most {FLAGS.max_trials} "
         f"trials of {trial_length(trials_run)}, scored on {held_out(dataset)} "
         f"({dataset.num_train:,} left to train on); in {FLAGS.tune_dir}")
    tuner = TrainerTuner(make_oracle(space), FLAGS.tune_dir, trials_run, space, strategy, chief,
                         datasets, FLAGS.executions_per_trial, FLAGS.mixed_precision)
    finished = len(tuner.oracle.end_order)
    if finished:
        _say(f"Resuming the search: {finished} trial(s) finished, kept")
    try:
        tuner.search()
    except RuntimeError as error:  # keras-tuner: too many consecutive failed trials
        sys.exit(f"The search stopped: {error}")
    if chief:
        rows = write_results(tuner.oracle, space, FLAGS.tune_dir, base, held_out(dataset))
        print(markdown_table(rows), flush=True)
        best = _read_json(os.path.join(FLAGS.tune_dir, BEST_FILE))
        if best:
            _say(f"Best: trial {best['trial']}, {FLAGS.objective}={best['score']:.4f}: "
                 f"{' '.join(best['train_flags'])}")
    if FLAGS.train_best:
        train_best(tuner, base, strategy, chief, datasets)


def run():
    """Console-script entry point (keras-resnet-tune)."""
    define_flags()
    list_flags_in_help(FLAGS)
    app.run(main)


if __name__ == "__main__":
    run()
