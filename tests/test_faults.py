"""Every fault a user meets ends in one line: bad values, a broken YAML file, an unusable zoo
directory, Ctrl-C, a corrupt zoo entry, a lock held by another run. Each case checks the exit
code (or the exception) and the one line, and that nothing else was printed or left behind."""

import logging
import os
import signal
import threading
import time

import numpy as np
import pytest
from conftest import SMOKE, finish, run_cli, start_cli

from sandbag import zoo as zoo_mod
from sandbag.config import ConfigError, check_argv
from sandbag.run import CONF_DIR
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
}


@pytest.mark.parametrize("argv, expected", BAD.values(), ids=BAD.keys())
def test_bad_values_are_one_line_naming_the_key_and_the_valid_ones(argv, expected):
    with pytest.raises(ConfigError) as err:
        check_argv(argv, CONF_DIR)
    message = str(err.value)
    assert "\n" not in message, message
    for text in expected:
        assert text in message, f"{text!r} missing from {message!r}"


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
    with pytest.raises(ZooError, match="read-only and empty"):
        Zoo(tmp_path / "empty")


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


@pytest.mark.slow
def test_ctrl_c_says_how_to_resume_and_exits_130(tmp_path):
    zoo = tmp_path / "zoo"
    proc = start_cli([*SMOKE, "train.steps=100000", "train.save_every=100000"], tmp_path / "run", zoo)
    deadline = time.time() + 240
    while not list(zoo.glob("*/.lock")) and time.time() < deadline:  # training has started
        time.sleep(0.2)
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    done = finish(proc, timeout=120)
    assert done.returncode == 130, done.stderr[-3000:]
    assert "interrupted; rerun the same command to resume" in done.stderr
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "run" / "results.json").exists()
