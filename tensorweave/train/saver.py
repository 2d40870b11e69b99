"""Checkpoints: ``Saver`` writes variable values to disk and reads them back.

    saver = tw.train.Saver(max_to_keep=3)
    path = saver.save(sess, "ckpt/model", global_step=step)      # -> "ckpt/model-1000"
    saver.restore(sess, tw.train.latest_checkpoint("ckpt"))

On-disk format (version 1), readable with numpy and json alone. A checkpoint is a *prefix*
``<dir>/<name>`` with two files:

* ``<prefix>.npz`` — a numpy ``savez`` archive, one array per variable. Archive keys are the
  variable names percent-escaped (``urllib.parse.quote(name, safe="")``, so ``W/Adam`` is
  ``W%2FAdam``); the index records each key. Numpy extension dtypes such as bfloat16 (kind
  ``V``) are stored as a view of unsigned integers of the same width (``uint16``).
* ``<prefix>.index.json`` —

      {"format": "tensorweave-checkpoint", "version": 1, "global_step": 1000,
       "data_file": "model-1000.npz", "data_bytes": 1234, "data_sha256": "<hex>",
       "variables": {"W/Adam": {"key": "W%2FAdam", "dtype": "float32", "shape": [784, 10],
                                "stored_dtype": "float32"}, ...}}

  ``dtype`` is the variable's dtype; when ``stored_dtype`` differs, view the stored array as
  ``dtype`` (``arr.view(ml_dtypes.bfloat16)``). ``data_sha256`` is the digest of the npz file.

A directory's *state file* (``checkpoint`` unless ``latest_filename`` says otherwise) names the
latest checkpoint and every one the Saver keeps, relative to the directory when inside it:

      {"format": "tensorweave-checkpoint-state", "version": 1,
       "model_checkpoint_path": "model-1000",
       "all_model_checkpoint_paths": ["model-800", "model-900", "model-1000"]}

Crash safety: every file is written to a temporary name in its directory, flushed, fsynced,
then renamed over its final name (``os.replace``, atomic). The prefix's files are renamed only
after all of them were written, and the state file is renamed last, so a save that dies at any
point leaves the previous checkpoint intact and ``latest_checkpoint`` pointing at it; old
checkpoints beyond ``max_to_keep`` are deleted only after the new state file is in place.
Re-saving to the *same* prefix (no ``global_step``) replaces two files, one after the other: a
crash between the two renames leaves a prefix whose index does not match its data, which
``restore`` detects by the digest (DataLossError) rather than loading mixed values.

Restoring checks everything first — every variable present, with the expected dtype and shape,
and the data file's digest — and reports all problems at once; only then are all values
written to the session together, so a failed restore changes no variable.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.parse
import warnings

import numpy as np

from tensorweave import errors
from tensorweave.graph import dtypes
from tensorweave.graph.core import get_default_graph
from tensorweave.graph.scopes import GraphKeys
from tensorweave.train.files import publish, remove_quietly, write_temp

__all__ = ["Saver", "CheckpointState", "latest_checkpoint", "get_checkpoint_state",
           "checkpoint_exists", "list_variables", "load_variable"]

FORMAT = "tensorweave-checkpoint"
STATE_FORMAT = "tensorweave-checkpoint-state"
VERSION = 1
STATE_FILENAME = "checkpoint"
_INDEX_SUFFIX = ".index.json"
_DATA_SUFFIX = ".npz"
_META_SUFFIX = ".meta.json"


class Saver:
    """Saves and restores a fixed set of variables.

    ``var_list``: a list of variables (saved under their op names) or a dict
    ``{checkpoint name: variable}``; default: every global variable of the default graph.
    ``max_to_keep``: how many recent checkpoints to keep (None or 0: all).
    ``keep_checkpoint_every_n_hours``: additionally keep one checkpoint per this many hours.
    ``reshape``: restore a value of another shape with the same number of elements.
    ``save_relative_paths`` (default True, unlike TF1): the state file names checkpoints
    relative to its directory, so the directory can be moved.
    ``sharded``, ``restore_sequentially``, ``defer_build`` and ``write_version`` are accepted
    for TF1 compatibility and change nothing: a checkpoint is always one data file, and
    restoring is all-or-nothing.
    """

    def __init__(self, var_list=None, reshape=False, sharded=False, max_to_keep=5,
                 keep_checkpoint_every_n_hours=10000.0, name=None, restore_sequentially=False,
                 defer_build=False, allow_empty=False, write_version=None, pad_step_number=False,
                 save_relative_paths=True, filename=None):
        self._entries = _resolve_var_list(var_list)
        if not self._entries and not allow_empty:
            raise ValueError("No variables to save")
        self._graph = self._entries[0][1].graph if self._entries else get_default_graph()
        self._reshape = reshape
        self._max_to_keep = max_to_keep
        self._keep_every_seconds = keep_checkpoint_every_n_hours * 3600.0
        self._next_keep_time = time.time() + self._keep_every_seconds
        self._pad_step_number = pad_step_number
        self._relative_paths = save_relative_paths
        self._filename = filename
        self._last_checkpoints: list[tuple[str, float]] = []

    # -- saving -----------------------------------------------------------------------------
    def save(self, sess, save_path, global_step=None, latest_filename=None,
             meta_graph_suffix="meta", write_meta_graph=False, write_state=True,
             strip_default_attrs=False, save_debug_info=False):
        """Write a checkpoint of the variables' values in ``sess``; return its prefix
        (``save_path``, or ``save_path-<step>`` when ``global_step`` is given).

        ``write_meta_graph`` also writes the graph as GraphDef JSON to ``<prefix>.meta.json``;
        ``write_state=False`` leaves the directory's state file (and ``max_to_keep``) alone.
        """
        self._check_session(sess)
        step = None if global_step is None else _step_number(sess, global_step)
        prefix = os.fspath(save_path)
        if step is not None:
            prefix = f"{prefix}-{step:08d}" if self._pad_step_number else f"{prefix}-{step}"
        directory = os.path.dirname(os.path.abspath(prefix))
        if not os.path.isdir(directory):
            raise ValueError(f"Parent directory of {save_path} doesn't exist, can't save.")
        values = self._snapshot(sess)
        _write_checkpoint_files(prefix, values, step,
                                sess.graph if write_meta_graph else None)
        if write_state:
            self._record_and_prune(prefix, latest_filename)
        return prefix

    def _snapshot(self, sess) -> dict:
        """``{checkpoint name: array}`` of every variable, read at one instant."""
        store = sess.variable_store
        with store.lock:
            committed = dict(store.values)
        values, uninitialized = {}, []
        for name, var in self._entries:
            value = committed.get(_store_name(var))
            if value is None:
                uninitialized.append(var.name)
            else:
                values[name] = np.asarray(value)
        if uninitialized:
            raise errors.FailedPreconditionError(
                None, None, f"cannot save uninitialized variables: {', '.join(uninitialized)} "
                            f"(run their initializers, or restore them, first)")
        return values

    def _record_and_prune(self, prefix, latest_filename):
        """Make ``prefix`` the latest checkpoint; delete the ones beyond ``max_to_keep``."""
        kept = [(p, t) for p, t in self._last_checkpoints if p != prefix]
        kept.append((prefix, time.time()))
        to_delete = []
        next_keep_time = self._next_keep_time
        while self._max_to_keep and len(kept) > self._max_to_keep:
            oldest, saved_at = kept.pop(0)
            if saved_at > next_keep_time:
                next_keep_time += self._keep_every_seconds  # preserved: off the list, on disk
            else:
                to_delete.append(oldest)
        directory = os.path.dirname(prefix) or "."
        update_checkpoint_state(directory, prefix, [p for p, _ in kept], latest_filename,
                                relative=self._relative_paths)
        # Only now, with the new state file in place, is it safe to forget and delete.
        self._last_checkpoints = kept
        self._next_keep_time = next_keep_time
        for old in to_delete:
            _delete_checkpoint(old)

    @property
    def last_checkpoints(self) -> list:
        """Prefixes of the checkpoints this Saver keeps, oldest first."""
        return [p for p, _ in self._last_checkpoints]

    def recover_last_checkpoints(self, checkpoint_paths):
        """Adopt ``checkpoint_paths`` (e.g. from ``get_checkpoint_state``) as this Saver's own,
        so ``max_to_keep`` counts and deletes them too (after a restart)."""
        now = time.time()
        self._last_checkpoints = [(p, now) for p in checkpoint_paths if checkpoint_exists(p)]

    def set_last_checkpoints(self, last_checkpoints):
        self._last_checkpoints = [(p, time.time()) for p in last_checkpoints]

    # -- restoring --------------------------------------------------------------------------
    def restore(self, sess, save_path):
        """Load the variables' values from the checkpoint ``save_path`` into ``sess``.

        All-or-nothing: a missing variable, a dtype or shape mismatch, or a damaged data file
        raises (NotFoundError, InvalidArgumentError, DataLossError) naming every offending
        variable, and leaves every variable as it was.
        """
        if save_path is None:
            raise ValueError("Can't load save_path when it is None.")
        self._check_session(sess)
        prefix = os.fspath(save_path)
        index = read_index(prefix)
        _raise_on_mismatches(prefix, index, self._entries, self._reshape)
        arrays = _load_arrays(prefix, index, [name for name, _ in self._entries])
        updates = {}
        for name, var in self._entries:
            value = arrays[name]
            if value.shape != _static_shape(var, value.shape):
                value = value.reshape(var.shape.as_list())  # reshape=True, checked above
            value.flags.writeable = False
            updates[_store_name(var)] = value
        sess.variable_store.commit(updates)

    def _check_session(self, sess):
        if sess is None or not hasattr(sess, "variable_store"):
            raise TypeError(f"expected a tw.Session, got {sess!r}")
        if self._entries and sess.graph is not self._graph:
            raise ValueError("the session's graph is not the graph of the Saver's variables")

    def as_saver_def(self):
        return {"max_to_keep": self._max_to_keep, "variables": [n for n, _ in self._entries],
                "filename": self._filename}


# -- var_list -------------------------------------------------------------------------------------
def _resolve_var_list(var_list) -> list:
    """Sorted ``[(checkpoint name, Variable), ...]``."""
    if var_list is None:
        var_list = get_default_graph().get_collection(GraphKeys.GLOBAL_VARIABLES)
    if isinstance(var_list, dict):
        pairs = list(var_list.items())
        for name, var in pairs:
            if not isinstance(name, str):
                raise TypeError(f"Saver var_list keys must be names (str), got {name!r}")
            _check_is_variable(var, f"var_list[{name!r}]")
    elif isinstance(var_list, (list, tuple, set, frozenset)):
        pairs = []
        for i, var in enumerate(var_list):
            _check_is_variable(var, f"var_list[{i}]")
            pairs.append((var.op.name, var))
    else:
        raise TypeError(f"Saver var_list must be a list or a dict of tw.Variables, got "
                        f"{type(var_list).__name__}")
    names = [name for name, _ in pairs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Saver var_list saves more than one variable under the names "
                         f"{duplicates}")
    graphs = {var.graph for _, var in pairs}
    if len(graphs) > 1:
        raise ValueError("Saver var_list mixes variables of different graphs")
    return sorted(pairs)


def _check_is_variable(value, where):
    op = getattr(value, "op", None)
    if op is None or getattr(op, "type", None) != "VariableV2":
        raise TypeError(f"Saver can save only tw.Variables, but {where} is {value!r}")


def _store_name(var) -> str:
    return var.op.attrs["shared_name"]


def _static_shape(var, fallback):
    shape = var.shape
    return tuple(shape.as_list()) if shape.is_fully_defined() else fallback


def _step_number(sess, global_step) -> int:
    if isinstance(global_step, (int, np.integer)) and not isinstance(global_step, bool):
        return int(global_step)
    op = getattr(global_step, "op", None)
    if op is not None and getattr(op, "type", None) == "VariableV2":
        value = sess.variable_store.values.get(_store_name(global_step))
        if value is None:
            raise errors.FailedPreconditionError(
                None, None, f"global_step {global_step.name} is not initialized")
    else:
        value = sess.run(global_step)
    value = np.asarray(value)
    if value.shape != () or value.dtype.kind not in "iu":
        raise TypeError(f"global_step must be an integer scalar, got a {value.dtype} value of "
                        f"shape {value.shape}")
    return int(value)


# -- writing --------------------------------------------------------------------------------------
def _write_checkpoint_files(prefix, values: dict, step, graph):
    """Write ``<prefix>.npz`` and ``<prefix>.index.json`` (and the meta graph), atomically."""
    temps = {}
    try:
        temps[prefix + _DATA_SUFFIX] = data_temp = write_temp(
            prefix + _DATA_SUFFIX, lambda f: np.savez(f, **_stored_arrays(values)))
        index = _index_for(prefix, values, step, data_temp)
        temps[prefix + _INDEX_SUFFIX] = write_temp(
            prefix + _INDEX_SUFFIX, lambda f: f.write(_json_bytes(index)))
        if graph is not None:
            from tensorweave.graph.serialization import to_json
            temps[prefix + _META_SUFFIX] = write_temp(
                prefix + _META_SUFFIX, lambda f: f.write(to_json(graph).encode("utf-8")))
        # Data first, index last: an index on disk always describes data already in place.
        for final in sorted(temps, key=lambda p: p.endswith(_INDEX_SUFFIX)):
            publish(temps[final], final)
            del temps[final]
    finally:
        for temp in temps.values():
            remove_quietly(temp)


def _stored_arrays(values: dict) -> dict:
    return {_archive_key(name): _storable(value) for name, value in values.items()}


def _archive_key(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _storable(value: np.ndarray) -> np.ndarray:
    """Extension dtypes (bfloat16, kind 'V') are stored as unsigned ints of the same width."""
    if value.dtype.kind == "V":
        return value.view(np.dtype(f"uint{8 * value.dtype.itemsize}"))
    if value.dtype == object:
        raise TypeError("string variables cannot be checkpointed")
    return value


def _index_for(prefix, values, step, data_path) -> dict:
    variables = {}
    for name, value in sorted(values.items()):
        variables[name] = {"key": _archive_key(name), "dtype": _dtype_name(value.dtype),
                           "shape": list(value.shape),
                           "stored_dtype": _storable(value).dtype.name}
    return {"format": FORMAT, "version": VERSION, "global_step": step,
            "data_file": os.path.basename(prefix) + _DATA_SUFFIX,
            "data_bytes": os.path.getsize(data_path), "data_sha256": _sha256(data_path),
            "variables": variables}


def _dtype_name(np_dtype) -> str:
    return dtypes.as_dtype(np_dtype).name


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode("utf-8")


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _delete_checkpoint(prefix):
    for suffix in (_INDEX_SUFFIX, _DATA_SUFFIX, _META_SUFFIX):
        path = prefix + suffix
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            warnings.warn(f"could not delete old checkpoint file {path}: {e}")


# -- reading --------------------------------------------------------------------------------------
def read_index(prefix) -> dict:
    """The parsed ``<prefix>.index.json``; NotFoundError if absent, DataLossError if unusable."""
    path = prefix + _INDEX_SUFFIX
    try:
        with open(path, "rb") as f:
            index = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise errors.NotFoundError(None, None, f"no checkpoint at {prefix}: {path} does not "
                                               f"exist") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise errors.DataLossError(None, None, f"checkpoint index {path} is damaged: {e}") \
            from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise errors.DataLossError(None, None, f"{path} is not a tensorweave checkpoint index")
    if index.get("version") != VERSION:
        raise errors.DataLossError(None, None, f"{path} has format version "
                                               f"{index.get('version')}; this tensorweave reads "
                                               f"version {VERSION}")
    return index


def _raise_on_mismatches(prefix, index, entries, reshape):
    """Compare the checkpoint with the variables; raise listing every problem."""
    stored = index["variables"]
    missing, mismatched = [], []
    for name, var in entries:
        info = stored.get(name)
        if info is None:
            missing.append(f"{name} (for variable {var.name})")
            continue
        want_dtype = var.dtype.base_dtype.name
        want_shape = var.shape
        found_shape = info["shape"]
        shape_ok = want_shape.is_compatible_with(found_shape) or (
            reshape and want_shape.is_fully_defined()
            and want_shape.num_elements() == int(np.prod(found_shape, dtype=np.int64)))
        if info["dtype"] != want_dtype or not shape_ok:
            mismatched.append(f"{name}: variable {var.name} expects "
                              f"{want_dtype}{_shape_text(want_shape)}, "
                              f"the checkpoint has {info['dtype']}{list(found_shape)}")
    if not missing and not mismatched:
        return
    lines = []
    if missing:
        lines.append(f"{len(missing)} variable(s) not found in checkpoint {prefix}: "
                     + "; ".join(missing))
    if mismatched:
        lines.append(f"{len(mismatched)} variable(s) do not match checkpoint {prefix}: "
                     + "; ".join(mismatched))
    cls = errors.NotFoundError if missing else errors.InvalidArgumentError
    raise cls(None, None, "restore failed, no variable was changed. " + " ".join(lines))


def _shape_text(shape) -> str:
    return "[unknown shape]" if shape.rank is None else str(shape.as_list()).replace("None", "?")


def _load_arrays(prefix, index, names) -> dict:
    """``{name: array}`` for ``names``, checked against the index and the file's digest."""
    data_path = os.path.join(os.path.dirname(prefix), index["data_file"])
    try:
        size = os.path.getsize(data_path)
    except FileNotFoundError:
        raise errors.NotFoundError(None, None, f"checkpoint {prefix}: its data file {data_path} "
                                               f"does not exist") from None
    if size != index["data_bytes"] or _sha256(data_path) != index["data_sha256"]:
        raise errors.DataLossError(None, None, f"checkpoint {prefix}: the data file {data_path} "
                                               f"does not match its index (damaged, or a save "
                                               f"was interrupted)")
    arrays = {}
    with np.load(data_path, allow_pickle=False) as archive:
        for name in names:
            info = index["variables"][name]
            value = archive[info["key"]]
            if info["stored_dtype"] != info["dtype"]:
                value = value.view(dtypes.as_dtype(info["dtype"]).np)
            if list(value.shape) != list(info["shape"]):
                raise errors.DataLossError(None, None, f"checkpoint {prefix}: {name} has shape "
                                                       f"{list(value.shape)} in the data file, "
                                                       f"{info['shape']} in the index")
            arrays[name] = value
    return arrays


def list_variables(ckpt_dir_or_file) -> list:
    """``[(name, shape), ...]`` of the variables in a checkpoint (a prefix or a directory)."""
    index = read_index(_prefix_of(ckpt_dir_or_file))
    return [(name, list(info["shape"])) for name, info in sorted(index["variables"].items())]


def load_variable(ckpt_dir_or_file, name) -> np.ndarray:
    """The value of variable ``name`` in a checkpoint (a prefix or a directory)."""
    prefix = _prefix_of(ckpt_dir_or_file)
    index = read_index(prefix)
    if name not in index["variables"]:
        raise errors.NotFoundError(None, None, f"variable {name} is not in checkpoint {prefix}")
    return _load_arrays(prefix, index, [name])[name]


def _prefix_of(ckpt_dir_or_file) -> str:
    path = os.fspath(ckpt_dir_or_file)
    if os.path.isdir(path):
        latest = latest_checkpoint(path)
        if latest is None:
            raise errors.NotFoundError(None, None, f"no checkpoint found in {path}")
        return latest
    return path


# -- the state file -------------------------------------------------------------------------------
class CheckpointState:
    """What a directory's state file says: the latest checkpoint and all kept ones."""

    def __init__(self, model_checkpoint_path, all_model_checkpoint_paths):
        self.model_checkpoint_path = model_checkpoint_path
        self.all_model_checkpoint_paths = list(all_model_checkpoint_paths)

    def __repr__(self):
        return (f"CheckpointState(model_checkpoint_path={self.model_checkpoint_path!r}, "
                f"all_model_checkpoint_paths={self.all_model_checkpoint_paths!r})")


def update_checkpoint_state(save_dir, model_checkpoint_path, all_model_checkpoint_paths=None,
                            latest_filename=None, relative=True):
    """Atomically (re)write the state file of ``save_dir``."""
    paths = list(all_model_checkpoint_paths or [])
    if model_checkpoint_path not in paths:
        paths.append(model_checkpoint_path)
    state = {"format": STATE_FORMAT, "version": VERSION,
             "model_checkpoint_path": _relative_to(save_dir, model_checkpoint_path, relative),
             "all_model_checkpoint_paths": [_relative_to(save_dir, p, relative) for p in paths]}
    path = os.path.join(save_dir, latest_filename or STATE_FILENAME)
    publish(write_temp(path, lambda f: f.write(_json_bytes(state))), path)


def _relative_to(directory, prefix, relative):
    """How the state file names ``prefix``: its base name when it lies in ``directory`` (and
    ``relative``), else its absolute path (a relative one would be read against the wrong
    directory)."""
    if relative and os.path.abspath(os.path.dirname(prefix)) == os.path.abspath(directory):
        return os.path.basename(prefix)
    return os.path.abspath(prefix)


def get_checkpoint_state(checkpoint_dir, latest_filename=None):
    """The directory's ``CheckpointState`` (paths joined with ``checkpoint_dir``), or None."""
    path = os.path.join(os.fspath(checkpoint_dir), latest_filename or STATE_FILENAME)
    try:
        with open(path, "rb") as f:
            state = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as e:
        warnings.warn(f"ignoring the unreadable checkpoint state file {path}: {e}")
        return None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        warnings.warn(f"ignoring {path}: not a tensorweave checkpoint state file")
        return None

    def resolve(p):
        return p if os.path.isabs(p) else os.path.join(os.fspath(checkpoint_dir), p)
    return CheckpointState(resolve(state["model_checkpoint_path"]),
                           [resolve(p) for p in state.get("all_model_checkpoint_paths", [])])


def latest_checkpoint(checkpoint_dir, latest_filename=None):
    """The prefix of the latest checkpoint in ``checkpoint_dir``, or None if there is none."""
    state = get_checkpoint_state(checkpoint_dir, latest_filename)
    if state is None or not state.model_checkpoint_path:
        return None
    if not checkpoint_exists(state.model_checkpoint_path):
        warnings.warn(f"the state file of {checkpoint_dir} names "
                      f"{state.model_checkpoint_path}, which does not exist")
        return None
    return state.model_checkpoint_path


def checkpoint_exists(checkpoint_prefix) -> bool:
    """Whether a checkpoint with this prefix is on disk."""
    return os.path.exists(os.fspath(checkpoint_prefix) + _INDEX_SUFFIX)
