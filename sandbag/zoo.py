"""A content-addressed store of trained models, kept with Orbax.

An entry's key is the hash of everything that determines the trained model (task, rung,
training config, seeds, parent entry, code format). An entry is complete only when its
``final.json`` -- written last, atomically, with a digest of the saved arrays -- exists;
anything else (a killed save, a truncated file, a digest mismatch) is treated as absent,
removed and retrained -- the digest of the stored files is checked before Orbax opens them,
so a damaged entry costs one log line, not a reader's stack of errors. While training,
periodic checkpoints under ``progress/`` let a killed run resume where it stopped. A file
lock per entry keeps concurrent runs from training the same model twice at once; a run that
waits for another says whom it waits for. Complete entries are read without the lock, so a
read-only or shared zoo serves every model it holds; it refuses only to train. In a run of
several processes (``distributed=true``) process 0 alone reads, locks and writes the zoo and
broadcasts what it loads; the others train with it.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import logging
import os
import shutil
import socket
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from sandbag.parallel import primary_process

FORMAT = 1  # bump when a change to the code changes what a given spec trains
log = logging.getLogger(__name__)


def spec_key(spec: dict) -> str:
    if "format" in spec:  # it would replace FORMAT below, and a bump would reach no such key
        raise ValueError(f"a zoo spec may not set 'format' (the zoo's own FORMAT): {sorted(spec)}")
    blob = json.dumps({"format": FORMAT, **spec}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def source_digest(obj, whole_file: bool = False) -> str | None:
    """A digest of ``obj``'s source code (``whole_file``: of the file that defines it, helpers
    included), for keys that must change when that code is edited; None where no source is
    kept (an object built at run time or in an interactive session)."""
    try:
        code = (
            Path(inspect.getsourcefile(obj)).read_bytes() if whole_file else inspect.getsource(obj).encode()
        )
    except (OSError, TypeError):
        return None
    return hashlib.sha256(code).hexdigest()[:12]


def task_key(task_cfg: dict, task) -> dict:
    """A task as zoo keys name it: its config and, for a task defined outside this package, a
    digest of its source file, so an edit to a user's task trains anew. (A change to the
    package's own tasks bumps ``sandbag.data.FORMAT`` instead.)"""
    cls = type(task)
    source = None
    if cls.__module__.partition(".")[0] != __name__.partition(".")[0]:
        source = source_digest(cls, whole_file=True)
    return dict(task_cfg) if source is None else {**task_cfg, "source": source}


def digest(tree) -> str:
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        a = np.asarray(leaf)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _checkpointer() -> ocp.StandardCheckpointer:
    """Orbax for this process alone: a zoo entry is written and read by one process (in a
    multi-process run, process 0), so no other is waited for."""
    me = jax.process_index()
    return ocp.StandardCheckpointer(
        multiprocessing_options=ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    )


def _save_tree(path: Path, tree) -> None:
    """Write ``tree``'s leaves to ``path`` atomically (tmp dir, then rename)."""
    leaves = {f"l{i:05d}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(tree))}
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    ckptr = _checkpointer()
    ckptr.save(tmp.absolute(), leaves)
    ckptr.wait_until_finished()
    ckptr.close()
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def _load_tree(path: Path, like):
    leaves, treedef = jax.tree.flatten(like)
    abstract = {
        f"l{i:05d}": jax.ShapeDtypeStruct(
            np.shape(x), np.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype
        )
        for i, x in enumerate(leaves)
    }
    with _checkpointer() as ckptr:
        restored = ckptr.restore(path.absolute(), abstract)
    return jax.tree.unflatten(treedef, [np.asarray(restored[k]) for k in sorted(restored)])


class ZooError(RuntimeError):
    """The zoo directory cannot serve this run (not a directory, or read-only with work to do)."""


def files_digest(path: Path) -> str:
    """sha256 over every stored file's relative name and bytes, in a fixed order."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)


class Entry:
    """One trained artifact: a pytree of arrays plus JSON metadata."""

    def __init__(self, root: Path, spec: dict):
        self.spec = spec
        self.key = spec_key(spec)
        self.dir = root / self.key
        self.progress = _Progress(self.dir / "progress")

    @property
    def complete(self) -> bool:
        return (self.dir / "final.json").exists()

    def load(self, like, *, repair: bool = True):
        """The stored tree (structured like ``like``) and its metadata, or None if absent/corrupt.

        ``repair`` removes a corrupt entry; only a lock holder may, or a reader could delete
        what another run is saving in its place."""
        meta_path = self.dir / "final.json"
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if "files" in meta and files_digest(self.dir / "final") != meta["files"]:
                raise ValueError("stored files do not match their digest")
            tree = _load_tree(self.dir / "final", like)
            if digest(tree) != meta["digest"]:  # entries saved before file digests have only this
                raise ValueError("digest mismatch")
        except Exception as e:  # noqa: BLE001 - any failure to read means: retrain
            if repair:
                log.warning("zoo entry %s is corrupt (%s): removing it and retraining", self.key, e)
                self.discard()
            return None
        return tree, meta

    def save(self, tree, meta: dict | None = None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "final.json").unlink(missing_ok=True)
        _write_json(self.dir / "spec.json", self.spec)
        _save_tree(self.dir / "final", tree)
        files = files_digest(self.dir / "final")
        _write_json(self.dir / "final.json", {"digest": digest(tree), "files": files, **(meta or {})})
        shutil.rmtree(self.dir / "progress", ignore_errors=True)

    def discard(self) -> None:
        for name in ("final.json", "final", "progress"):
            p = self.dir / name
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

    @contextmanager
    def lock(self, what: str = ""):
        """Exclusive while held: only one process trains this entry at a time. The holder writes
        who it is into the lock file, so a process that has to wait can say whom it waits for."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            f = open(self.dir / ".lock", "a+")
        except OSError as e:  # a shared zoo whose entry belongs to someone else
            raise ZooError(f"cannot train {what} into zoo entry {self.dir}: {e.strerror}") from None
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                log.info("waiting for zoo entry %s (%s): being trained by %s", self.key, what, holder)
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                f.seek(0)
                f.truncate()
                f.write(f"pid {os.getpid()} on {socket.gethostname()}")
                f.flush()
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


class _Progress:
    """Periodic training checkpoints: the newest readable one wins."""

    def __init__(self, root: Path):
        self.root = root

    def save(self, step: int, state) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"step_{step:08d}"
        _save_tree(path, state)
        _write_json(path.with_suffix(".json"), {"step": step, "digest": digest(state)})
        for old in self.root.glob("step_*"):
            if old.name not in (path.name, path.name + ".json"):
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)

    def load(self, like):
        metas = sorted(self.root.glob("step_*.json"), reverse=True) if self.root.exists() else []
        for meta_path in metas:
            try:
                meta = json.loads(meta_path.read_text())
                state = _load_tree(meta_path.with_suffix(""), _with_losses(like, meta["step"]))
                if digest(state) == meta["digest"]:
                    log.info("resuming from checkpoint at step %d", meta["step"])
                    return meta["step"], state
            except Exception as e:  # noqa: BLE001
                log.warning("ignoring unreadable checkpoint %s (%s)", meta_path.name, e)
        return None


class _SharedProgress:
    """Process 0's training checkpoints, for every process of a multi-process run: process 0
    alone saves them, and a resumed training starts every process from what it loads."""

    def __init__(self, progress: _Progress):
        self.progress = progress
        self.primary = primary_process()

    def save(self, step: int, state) -> None:
        if self.primary:
            self.progress.save(step, state)

    def load(self, like):
        got = self.progress.load(like) if self.primary else None
        step = int(multihost_utils.broadcast_one_to_all(np.int32(-1 if got is None else got[0])))
        if step < 0:
            return None
        state = got[1] if self.primary else _with_losses(like, step)
        return step, multihost_utils.broadcast_one_to_all(state)


def _with_losses(like, step: int):
    """The trainer stores the loss history beside the state; its shape follows the step."""
    n_members = jax.tree.leaves(like)[0].shape[0]
    return {**like, "losses": np.zeros((n_members, step), np.float32)}


class Zoo:
    """Entries under one directory, plus a count of what this process trained and reused."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()
        self.trained: list[str] = []
        self.reused: list[str] = []
        self.writable = self._check()

    def _check(self) -> bool:
        """Whether this process can train into the zoo; ZooError if it cannot even read it."""
        where = f"zoo.dir {str(self.root)!r}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ZooError(f"{where} is a file, not a directory") from None
        except OSError as e:
            if not os.path.isdir(self.root):
                raise ZooError(f"{where} cannot be created: {e.strerror}") from None
        try:  # the write itself, not os.access: root passes any permission check but not a read-only fs
            with tempfile.TemporaryFile(dir=self.root):
                return True
        except OSError as e:
            why = e.strerror
        try:
            empty = not any(self.root.iterdir())
        except OSError as e:
            raise ZooError(f"{where} cannot be read: {e.strerror}") from None
        if empty:
            raise ZooError(f"{where} is read-only ({why}) and empty: nothing to load, nowhere to train")
        log.info("%s is read-only (%s): complete entries load, nothing can be trained", where, why)
        return False

    def fetch_or_train(self, spec: dict, like, train_fn, what: str):
        """The stored tree for ``spec``, or ``train_fn(progress) -> (tree, meta)`` run and stored.

        Returns (tree, key). A complete entry is read without the lock (a read-only or shared
        zoo serves what it holds); training holds the entry's lock, so concurrent runs wait for
        one another instead of training the same model twice.
        """
        if jax.process_count() > 1:
            return self._fetch_or_train_together(spec, like, train_fn, what)
        entry = self.entry(spec)
        got = entry.load(like, repair=False) if entry.complete else None
        if got is None and not self.writable:
            raise self._read_only(what)
        if got is None:
            with entry.lock(what):
                got = entry.load(like)  # another run may have saved it while this one waited
                if got is None:
                    log.info("%s: training (zoo entry %s)", what, entry.key)
                    tree, meta = train_fn(entry.progress)
                    entry.save(tree, meta)
                    self.trained.append(entry.key)
                    return tree, entry.key
        log.info("%s: reused from zoo entry %s", what, entry.key)
        self.reused.append(entry.key)
        return got[0], entry.key

    def _fetch_or_train_together(self, spec: dict, like, train_fn, what: str):
        """``fetch_or_train`` in a run of several processes (``distributed=true``): process 0
        alone reads, locks and writes the zoo, and sends the others its verdict and what it
        loaded; a model to train, all of them train together. (If each took the entry's lock,
        those waiting on a shared zoo would never join the training the holder waits for them
        in; and the others' zoo directories need not hold anything.)"""
        entry = self.entry(spec)
        primary = primary_process()
        with ExitStack() as held:
            got, verdict = None, "train"
            if primary:
                got = entry.load(like, repair=False) if entry.complete else None
                if got is None and self.writable:
                    held.enter_context(entry.lock(what))
                    got = entry.load(like)
                verdict = "load" if got is not None else "train" if self.writable else "fail"
            codes = ("train", "load", "fail")
            verdict = codes[int(multihost_utils.broadcast_one_to_all(np.int32(codes.index(verdict))))]
            if verdict == "fail":
                raise self._read_only(what)
            if verdict == "load":
                log.info("%s: reused from zoo entry %s", what, entry.key)
                self.reused.append(entry.key)
                return multihost_utils.broadcast_one_to_all(got[0] if primary else like), entry.key
            log.info("%s: training (zoo entry %s)", what, entry.key)
            tree, meta = train_fn(_SharedProgress(entry.progress))
            if primary:
                entry.save(tree, meta)
            self.trained.append(entry.key)
            return tree, entry.key

    def _read_only(self, what: str) -> ZooError:
        return ZooError(
            f"zoo.dir {str(self.root)!r} is read-only and has no complete entry for {what}; "
            "point zoo.dir at a writable directory"
        )

    def entry(self, spec: dict) -> Entry:
        return Entry(self.root, spec)


def default_dir() -> str:
    """Per user: $SANDBAG_ZOO, else $XDG_CACHE_HOME/sandbag/zoo, else ~/.cache/sandbag/zoo."""
    if os.environ.get("SANDBAG_ZOO"):
        return os.environ["SANDBAG_ZOO"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "sandbag", "zoo")
