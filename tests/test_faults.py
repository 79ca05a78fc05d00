"""Every fault a user meets ends in one line: bad values, a broken YAML file, an unusable zoo
directory, Ctrl-C, a corrupt zoo entry, a lock held by another run. Each case checks the exit
code (or the exception) and the one line, and that nothing else was printed or left behind."""

import gc
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SMOKE, finish, run_cli, start_cli

from sandbag import run
from sandbag import zoo as zoo_mod
from sandbag.config import ConfigError, check_argv
from sandbag.run import CONF_DIR
from sandbag.tracking import NoTracker
from sandbag.zoo import Zoo, ZooError

EXP = "+experiment=organisms"
BAD = {
    "learning rate not a number": ([EXP, "train.lr=fast"], ["train.lr", "'fast'", "positive number"]),
    "organism learning rate not a number": ([EXP, "organisms.lr=fast"], ["organisms.lr", "'fast'"]),
    "negative warm-up": ([EXP, "train.warmup=-5"], ["train.warmup", "-5", "non-negative"]),
    "logger mode misspelt": ([EXP, "logger.mode=offine"], ["logger.mode", "offine", "offline", "online"]),
    "missing experiment": ([], ["no experiment chosen", "+experiment=NAME", "gap_sweep", "organisms"]),
    "unknown experiment": (["+experiment=bogus"], ["bogus", "gap_sweep", "capability_ladder"]),
    "unknown launcher": ([EXP, "hydra/launcher=bogus"], ["bogus", "basic", "joblib", "submitit_slurm"]),
    "override that does not parse": ([EXP, "train.lr=[1"], ["could not parse", "[1"]),
    "missing --config-dir": (["-cd", "/nonexistent/conf", EXP], ["--config-dir", "not a directory"]),
    "option between overrides": ([EXP, "-m", "task=signed_sum"], ["task=signed_sum", "before or after"]),
    "unknown student start": (
        ["+experiment=elicitation", "elicitation.w2s_start=easy"],
        ["elicitation.w2s_start", "'easy'", "scratch", "easy_levels"],
    ),
    "recognition above 1": (
        [EXP, "judge=partial_oracle", "judge.recognition=1.5"],
        ["judge.recognition", "1.5", "[0, 1]"],
    ),
    "unknown supervisor rung": (
        ["+experiment=supervisor_sweep", "supervisors=[nano,huge]"],
        ["supervisor rung", "'huge'", "nano", "tiny", "medium"],
    ),
    "no supervisor rung": (["+experiment=supervisor_sweep", "supervisors=[]"], ["supervisors", "tiny"]),
}


@pytest.mark.parametrize("argv, expected", BAD.values(), ids=BAD.keys())
def test_bad_input_exits_2_with_one_line_naming_what_is_valid(argv, expected, monkeypatch, capsys):
    """Through ``run.main`` itself, in process: it refuses before Hydra starts any job."""
    monkeypatch.setattr(sys, "argv", ["sandbag.run", *argv])
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # main installs its own
    with pytest.raises(SystemExit) as done:
        run.main()
    assert done.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: "), err
    for text in expected:
        assert text in err, f"{text!r} missing from {err!r}"


@pytest.fixture
def broken_yaml(tmp_path):
    """A user config directory whose task YAML has a syntax error on line 3."""
    (tmp_path / "conf" / "task").mkdir(parents=True)
    path = tmp_path / "conf" / "task" / "broken.yaml"
    path.write_text("name: signed_sum\nslots: [5\ndigits: 2\n")
    return path, [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "task=broken"]


def test_a_yaml_syntax_error_is_one_line_with_file_and_line(broken_yaml, tmp_path):
    path, argv = broken_yaml
    with pytest.raises(ConfigError) as err:
        check_argv([EXP, *argv], CONF_DIR)
    assert str(err.value).startswith(f"{path}:3: YAML syntax error") and "\n" not in str(err.value)
    proc = run_cli([*SMOKE, *argv], tmp_path / "run", tmp_path / "zoo")
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {err.value}", proc.stderr[-2000:]


def test_a_user_config_dir_is_read_as_hydra_reads_it(broken_yaml):
    """``--config-dir`` is Hydra's option, not an override: its configs are composed and
    checked like the package's own (a broken one is one line with file and line)."""
    path, _ = broken_yaml
    (path.parent / "four.yaml").write_text("name: signed_sum\nslots: 4\ndigits: 2\n")
    conf = str(path.parent.parent)
    check_argv(["--config-dir", conf, EXP, "task=four"], CONF_DIR)
    with pytest.raises(ConfigError, match="slots"):
        check_argv(["-cd", conf, EXP, "task=four", "task.slots=0"], CONF_DIR)
    with pytest.raises(ConfigError) as err:
        check_argv([EXP, "task=broken", "-cd", conf], CONF_DIR)
    assert str(err.value).startswith(f"{path}:3: YAML syntax error")


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_unusable_zoo_directory_is_refused_before_any_compute(tmp_path, where):
    afile = tmp_path / "not_a_dir"
    afile.write_text("x")
    zoo = afile if where == "a file" else afile / "zoo"
    proc = run_cli([*SMOKE, f"zoo.dir={zoo}"], tmp_path / "run", tmp_path / "unused")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().startswith(f"error: zoo.dir '{zoo}'") and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists(), "refused before Hydra made a run directory"


def test_the_logger_mode_is_checked_before_the_run_directory_exists(tmp_path):
    argv = ["+experiment=capability_ladder", "scale=smoke", "logger=wandb", "logger.mode=offine"]
    proc = run_cli(argv, tmp_path / "run", tmp_path / "zoo")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [
        "error: logger.mode: unknown 'offine'; valid: online, offline, disabled"
    ]
    assert not (tmp_path / "run").exists()


def make_read_only(monkeypatch):
    """Every zoo directory read-only for this process (as root, permission bits are no barrier,
    so the zoo's write probe itself is made to fail)."""

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(zoo_mod.tempfile, "TemporaryFile", refuse)


def test_a_read_only_zoo_serves_its_complete_entries_without_locking(tmp_path, monkeypatch):
    tree = {"w": np.arange(6.0).reshape(2, 3)}
    Zoo(tmp_path).fetch_or_train({"kind": "x"}, tree, lambda progress: (tree, {}), "x")
    make_read_only(monkeypatch)
    monkeypatch.setattr(zoo_mod.Entry, "lock", lambda *a, **k: pytest.fail("a read-only zoo took the lock"))
    ro = Zoo(tmp_path)
    assert not ro.writable
    got, _ = ro.fetch_or_train({"kind": "x"}, tree, lambda progress: pytest.fail("retrained"), "x")
    np.testing.assert_array_equal(got["w"], tree["w"])
    assert ro.reused and not ro.trained
    with pytest.raises(ZooError, match="read-only and has no complete entry for y"):
        ro.fetch_or_train({"kind": "y"}, tree, lambda progress: pytest.fail("trained"), "y")


def test_an_empty_read_only_zoo_is_refused_up_front(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    make_read_only(monkeypatch)
    with pytest.raises(ZooError, match=r"read-only \(Permission denied\) and empty"):
        Zoo(tmp_path / "empty")


def _can_create_in(path: Path) -> bool:
    try:
        with zoo_mod.tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False


def test_a_zoo_this_process_cannot_write_is_refused_when_it_would_train(tmp_path):
    """A directory that refuses new files even to root (sysfs): the run stops with one line at
    its first model to train, not with a traceback."""
    ro = Path("/sys/kernel")
    if not ro.is_dir() or _can_create_in(ro):
        pytest.skip("no directory here that refuses writes to this user")
    proc = run_cli([*SMOKE, f"zoo.dir={ro}"], tmp_path / "run", tmp_path / "unused")
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: zoo.dir '{ro}' is read-only and has no complete entry for weak rung tiny (40 steps); "
        "point zoo.dir at a writable directory"
    ], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "run" / "results.json").exists()


def test_complete_entries_load_without_the_lock_and_training_needs_it(tmp_path):
    """A shared zoo whose entries this user cannot lock (here the lock path is a directory,
    which ``open`` refuses even to root): complete entries still load, training is refused in
    one line."""
    tree = {"w": np.arange(6.0).reshape(2, 3)}
    zoo = Zoo(tmp_path)
    zoo.fetch_or_train({"kind": "x"}, tree, lambda progress: (tree, {}), "x")
    for kind in ("x", "y"):
        (zoo.entry({"kind": kind}).dir / ".lock").unlink(missing_ok=True)
        (zoo.entry({"kind": kind}).dir / ".lock").mkdir(parents=True)
    got, _ = zoo.fetch_or_train({"kind": "x"}, tree, lambda progress: pytest.fail("retrained"), "x")
    np.testing.assert_array_equal(got["w"], tree["w"])
    with pytest.raises(ZooError, match=r"cannot train y into zoo entry .*: Is a directory"):
        zoo.fetch_or_train({"kind": "y"}, tree, lambda progress: pytest.fail("trained"), "y")


def test_a_corrupt_entry_is_retrained_without_orbax_noise(tmp_path, capfd):
    """The stored files' digest is checked before Orbax opens them: a damaged entry costs one
    warning, not Orbax's stack of asynchronous reader errors."""
    tree = {"w": np.arange(600.0).reshape(20, 30)}
    zoo = Zoo(tmp_path)
    zoo.fetch_or_train({"kind": "x"}, tree, lambda progress: (tree, {}), "x")
    entry = zoo.entry({"kind": "x"})
    for f in (entry.dir / "final").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(np.random.default_rng(0).integers(0, 256, f.stat().st_size, np.uint8).tobytes())
    capfd.readouterr()
    again = Zoo(tmp_path)
    again.fetch_or_train({"kind": "x"}, tree, lambda progress: (tree, {}), "x")
    assert again.trained == [entry.key], "the corrupt entry is retrained"
    err = "".join(capfd.readouterr())
    assert "Traceback" not in err and "Event loop is closed" not in err and "DATA_LOSS" not in err, err[
        -2000:
    ]


def test_an_entry_saved_before_file_digests_still_loads_and_is_still_checked(tmp_path):
    """Entries written before ``final.json`` held a digest of the files have only the digest of
    the arrays: they load, and a mismatch there still means retrain."""
    tree = {"w": np.arange(6.0)}
    zoo = Zoo(tmp_path)
    zoo.fetch_or_train({"kind": "x"}, tree, lambda progress: (tree, {}), "x")
    meta_path = zoo.entry({"kind": "x"}).dir / "final.json"
    meta = json.loads(meta_path.read_text())
    del meta["files"]
    meta_path.write_text(json.dumps(meta))
    got, _ = zoo.entry({"kind": "x"}).load(tree)
    np.testing.assert_array_equal(got["w"], tree["w"])
    meta_path.write_text(json.dumps({**meta, "digest": "0" * 64}))
    assert zoo.entry({"kind": "x"}).load(tree) is None


def test_a_run_waiting_for_anothers_lock_says_whom_it_waits_for(tmp_path, caplog):
    tree = {"w": np.zeros(3)}
    zoo = Zoo(tmp_path)
    entry = zoo.entry({"kind": "x"})
    caplog.set_level(logging.INFO, logger="sandbag.zoo")
    with entry.lock("x"):  # another run holds it (flock: per open file, so this thread waits too)
        done = threading.Event()
        t = threading.Thread(
            target=lambda: (zoo.fetch_or_train({"kind": "x"}, tree, lambda p: (tree, {}), "x"), done.set())
        )
        t.start()
        time.sleep(1.0)
        assert not done.is_set(), "the second run must wait"
    t.join(timeout=60)
    waits = [r.getMessage() for r in caplog.records if "waiting for zoo entry" in r.getMessage()]
    assert waits == [
        f"waiting for zoo entry {entry.key} (x): being trained by pid {os.getpid()} on {os.uname()[1]}"
    ]


def test_a_ctrl_c_swallowed_by_a_gc_callback_is_raised_again(monkeypatch):
    """JAX runs Python in a garbage-collector callback, where Python drops any exception: a
    Ctrl-C landing there was lost (the run went on training). ``run.main``'s hook re-raises it."""
    monkeypatch.setattr(sys, "unraisablehook", run._keep_ctrl_c)
    alarm = signal.signal(signal.SIGALRM, run._interrupt)
    fired = []

    def interrupted_during_gc(phase, info):
        if not fired:
            fired.append(phase)
            raise KeyboardInterrupt

    gc.callbacks.append(interrupted_during_gc)
    try:
        with pytest.raises(KeyboardInterrupt):
            gc.collect()
            time.sleep(5)
    finally:
        gc.callbacks.remove(interrupted_during_gc)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, alarm)
    assert fired


def test_a_tracker_is_finished_with_the_runs_exit_code():
    """W&B is told how a run ended (130 after Ctrl-C), so it never stays 'running'."""
    codes = []

    class Recorder(NoTracker):
        def finish(self, exit_code: int = 0) -> None:
            codes.append(exit_code)

    for error in (None, RuntimeError, KeyboardInterrupt):
        try:
            with Recorder():
                if error:
                    raise error
        except (RuntimeError, KeyboardInterrupt):
            pass
    assert codes == [0, 1, 130]


@pytest.mark.slow
def test_ctrl_c_says_how_to_resume_and_exits_130(tmp_path):
    zoo = tmp_path / "zoo"
    proc = start_cli([*SMOKE, "train.steps=100000", "train.save_every=100000"], tmp_path / "run", zoo)
    deadline = time.time() + 240
    while not list(zoo.glob("*/.lock")) and time.time() < deadline:  # training has started
        time.sleep(0.2)
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    try:
        done = finish(proc, timeout=120)
    finally:
        proc.kill()  # a no-op once it has exited; never leave a run training behind a failed test
    assert done.returncode == 130, done.stderr[-3000:]
    assert "interrupted; rerun the same command to resume" in done.stderr
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "run" / "results.json").exists()
