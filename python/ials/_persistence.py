"""Model files: numpy ``.npz`` archives that are safe to load and written atomically.

Layout of a file written by ials (format ``ials.AlternatingLeastSquares``, version 1): one ``.npy``
member per entry, every one a plain (never an object) array:

* ``ials_format`` (str), ``ials_format_version`` (int), ``ials_note`` (str, what was not saved),
  ``ials_checksum`` (str): SHA-256, in hex, of every other entry (name, dtype, shape and bytes, in
  name order), so that a truncated, corrupted or hand-edited file is refused;
* the constructor parameters as 0-d arrays, under the names implicit 0.7.3 uses (``factors``,
  ``regularization``, ``alpha``, ``dtype`` as a name, ``use_native``, ``use_cg``, ``iterations``,
  ``calculate_training_loss``, ``num_threads``, ``cg_steps``, ``random_state`` when it is an int
  seed) plus ``regularization_exponent``, ``unobserved_weight``, ``block_size``, ``block_sweeps``
  and ``solver`` (str, absent when None); files written before the block solver, without the
  last three, load with their defaults;
* ``user_factors``, ``item_factors`` (absent for an unfitted model);
* optionally the training interactions with their raw ids (``interactions_user_ids``,
  ``interactions_item_ids``, and the CSR arrays ``interactions_indptr``,
  ``interactions_indices``, ``interactions_data``);
* optionally the confidence transform the model was trained with (``confidence`` (str, a name
  of :class:`ials.Confidence`), ``confidence_alpha``, ``confidence_eps``), written by
  :meth:`ials.Recommender.save`.

Because the parameter names are implicit's, implicit's ``load`` reads these files too. Files
written by implicit 0.7.3's ``save`` (no ``ials_*`` entries, no checksum) are loaded after the
same checks of names, types and shapes.

Loading never unpickles: each member's header is read first and an object array is refused
(implicit writes one for a ``Generator`` random_state, which implicit itself cannot load; that
single entry is skipped unread and the model gets ``random_state=None``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import numbers
import os
import stat
import struct
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._validation import check_dtype, check_memory

log = logging.getLogger(__name__)

FORMAT = "ials.AlternatingLeastSquares"
VERSION = 1

# Constructor parameter -> kind of its 0-d entry.
_PARAMETERS = {
    "factors": "int",
    "regularization": "float",
    "alpha": "float",
    "dtype": "str",
    "use_native": "bool",
    "use_cg": "bool",
    "iterations": "int",
    "calculate_training_loss": "bool",
    "num_threads": "int",
    "random_state": "int",
    "cg_steps": "int",
    "regularization_exponent": "float",
    "unobserved_weight": "float",
    "solver": "str",
    "block_size": "int",
    "block_sweeps": "int",
}
_OPTIONAL_PARAMETERS = {"random_state", "solver", "block_size", "block_sweeps"}
_FACTORS = ("user_factors", "item_factors")
_INTERACTIONS = (
    "interactions_user_ids",
    "interactions_item_ids",
    "interactions_indptr",
    "interactions_indices",
    "interactions_data",
)
_CONFIDENCE = {"confidence": "str", "confidence_alpha": "float", "confidence_eps": "float"}
Transform = tuple[str, float, float]  # a confidence transform: name, alpha, eps
_META = ("ials_format", "ials_format_version", "ials_note", "ials_checksum")
_IMPLICIT_KEYS = {
    "user_factors",
    "item_factors",
    "regularization",
    "factors",
    "num_threads",
    "iterations",
    "use_native",
    "use_cg",
    "cg_steps",
    "calculate_training_loss",
    "dtype",
    "random_state",
    "alpha",
}


def model_path(fileobj_or_path: Any) -> Any:
    """A path with ``.npz`` appended when missing (as numpy and implicit do); a file object as
    is."""
    if isinstance(fileobj_or_path, str | os.PathLike):
        path = os.fspath(fileobj_or_path)
        if isinstance(path, bytes):
            raise TypeError("the model path must be a str or os.PathLike of str, not bytes")
        return path if path.endswith(".npz") else path + ".npz"
    return fileobj_or_path


def _checksum(entries: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(entries):
        if name == "ials_checksum":
            continue
        array = np.ascontiguousarray(entries[name])
        payload = array.tobytes()
        for part in (name, array.dtype.str, repr(tuple(array.shape))):
            encoded = part.encode("utf-8")
            digest.update(struct.pack("<Q", len(encoded)) + encoded)
        digest.update(struct.pack("<Q", len(payload)))
        digest.update(payload)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Writing


def _write_npz(handle: Any, entries: dict[str, np.ndarray]) -> None:
    """Writes the archive (a separate function so that tests can make it fail midway)."""
    arrays: dict[str, Any] = dict(entries)
    np.savez(handle, **arrays)


def _fsync_directory(directory: str) -> None:
    """Makes the rename durable where the platform allows it."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _temporary_prefix(path: str) -> str:
    """Temporary files of a save of ``path`` are named ``.<name>.<pid>.<random>.tmp``."""
    return "." + os.path.basename(path) + "."


def _remove_orphans(path: str) -> None:
    """Removes the temporary files that saves of ``path`` by processes no longer running left
    behind (killed before they could clean up); a live process's file is left alone."""
    if os.name != "posix":  # no signal 0 to ask whether a process runs
        return
    directory = os.path.dirname(os.path.abspath(path))
    prefix = _temporary_prefix(path)
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            if not (name.startswith(prefix) and name.endswith(".tmp")):
                continue
            pid = name[len(prefix) :].split(".", 1)[0]
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))
            except OSError:  # running, under another user
                continue


def _write_atomically(path: str, entries: dict[str, np.ndarray]) -> None:
    """Writes a temporary file in the target's directory, flushes it to disk, then renames it over
    the target: a crash or an error at any point leaves the old file (or none) in place. The
    temporary file is removed when the save fails or is interrupted; one left by a save killed
    outright (SIGKILL, power loss) is removed by the next save of the same path."""
    directory = os.path.dirname(os.path.abspath(path))
    _remove_orphans(path)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f"{_temporary_prefix(path)}{os.getpid()}.", suffix=".tmp", dir=directory
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            _write_npz(handle, entries)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)  # keep a replaced file's permissions
        except FileNotFoundError:
            mode = 0o644
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def _parameter_entries(model: Any) -> tuple[dict[str, np.ndarray], str]:
    entries: dict[str, np.ndarray] = {}
    notes = []
    for name, kind in _PARAMETERS.items():
        value = getattr(model, name)
        if value is None:  # None is each optional parameter's default: absent from the file
            continue
        if name == "random_state":
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                if np.iinfo(np.int64).min <= int(value) <= np.iinfo(np.int64).max:
                    entries[name] = np.array(int(value), dtype=np.int64)
                    continue
            notes.append(f"random_state ({type(value).__name__}) was not saved; it loads as None")
            continue
        if kind == "str":
            entries[name] = np.array(np.dtype(value).name if name == "dtype" else str(value))
        elif kind == "int":
            entries[name] = np.array(int(value), dtype=np.int64)
        elif kind == "float":
            entries[name] = np.array(float(value), dtype=np.float64)
        else:
            entries[name] = np.array(bool(value))
    return entries, "; ".join(notes)


def save_model(
    model: Any,
    fileobj_or_path: Any,
    interactions: Any = None,
    confidence: Transform | None = None,
) -> None:
    """Writes ``model`` (and, optionally, the interactions it was trained on with their raw
    ids, and its confidence transform as (name, alpha, eps)) to a checksummed ``.npz``;
    atomically when given a path."""
    model.fit_settings()  # checks every parameter
    parameters, note = _parameter_entries(model)
    # The format entries come first in the archive: a damaged central directory that lists only
    # the first members still shows an ials file (whose checksum then fails), never a file that
    # could pass for one of implicit's.
    entries: dict[str, np.ndarray] = {
        "ials_format": np.array(FORMAT),
        "ials_format_version": np.array(VERSION, dtype=np.int64),
        "ials_note": np.array(note),
        "ials_checksum": np.array(""),
        **parameters,
    }
    users, items = model.user_factors, model.item_factors
    if (users is None) != (items is None):
        raise ValueError("the model has only one of user_factors and item_factors set")
    if users is not None:
        entries["user_factors"] = np.ascontiguousarray(users)
        entries["item_factors"] = np.ascontiguousarray(items)
    if interactions is not None:
        if users is None:
            raise ValueError("interactions can only be saved with a fitted model")
        matrix = interactions.matrix
        entries["interactions_user_ids"] = np.asarray(interactions.user_ids)
        entries["interactions_item_ids"] = np.asarray(interactions.item_ids)
        entries["interactions_indptr"] = np.asarray(matrix.indptr, dtype=np.int64)
        entries["interactions_indices"] = np.asarray(matrix.indices, dtype=np.int32)
        entries["interactions_data"] = np.asarray(matrix.data, dtype=np.float32)
    if confidence is not None:
        name, alpha, eps = confidence
        entries["confidence"] = np.array(str(name))
        entries["confidence_alpha"] = np.array(float(alpha), dtype=np.float64)
        entries["confidence_eps"] = np.array(float(eps), dtype=np.float64)
    entries["ials_checksum"] = np.array(_checksum(entries))
    _parse("the model", entries)  # never write a file that would not load
    target = model_path(fileobj_or_path)
    if isinstance(target, str):
        _write_atomically(target, entries)
    else:
        _write_npz(target, entries)


# ---------------------------------------------------------------------------------------------
# Reading


def _member_header(handle: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """The shape and dtype a ``.npy`` member declares; ``handle`` is left at its data."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return tuple(shape), np.dtype(dtype)


# Deflate cannot expand data by more than this factor (RFC 1951: at most 258 bytes per 2 bits).
_DEFLATE_RATIO = 1032


def _check_member_size(
    member: zipfile.ZipInfo,
    key: str,
    header: int,
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    archive_size: int | None,
) -> None:
    """Refuses a member whose header declares more data than the member (and the file) can hold,
    before numpy allocates the array the header declares."""
    data = math.prod(shape) * dtype.itemsize
    if header + data != member.file_size:
        raise _Refused(
            f"entry {key!r} declares shape {shape} of {dtype} ({data} bytes) but holds "
            f"{member.file_size - header} bytes"
        )
    if archive_size is not None and member.compress_size > archive_size:
        raise _Refused(f"entry {key!r} claims more bytes than the file has")
    expands = {zipfile.ZIP_STORED: 1, zipfile.ZIP_DEFLATED: _DEFLATE_RATIO}
    ratio = expands.get(member.compress_type)
    if ratio is not None and member.file_size > ratio * member.compress_size + 64:
        raise _Refused(
            f"entry {key!r} claims {member.file_size} bytes from {member.compress_size} stored"
        )
    check_memory(f"entry {key!r} of shape {shape}", data, "its array")


class _Refused(ValueError):
    """A well-formed archive that ials will not load."""


def _remaining_size(handle: Any) -> int | None:
    """Bytes from the position of ``handle`` to its end; None when it cannot seek."""
    try:
        start = handle.tell()
        end = handle.seek(0, os.SEEK_END)
        handle.seek(start)
    except (AttributeError, OSError, ValueError):
        return None
    return int(end - start)


def _read_archive(handle: Any, where: str) -> dict[str, np.ndarray]:
    """Every member of the archive as an array, without ever unpickling."""
    arrays: dict[str, np.ndarray] = {}
    archive_size = _remaining_size(handle)
    try:
        with zipfile.ZipFile(handle) as archive:
            members = archive.infolist()
            names = [member.filename for member in members]
            if len(set(names)) != len(names):
                raise _Refused("an entry appears twice")
            written_by_ials = "ials_format.npy" in names
            for member in members:
                if not member.filename.endswith(".npy"):
                    raise _Refused(f"unexpected member {member.filename!r}")
                key = member.filename[: -len(".npy")]
                with archive.open(member) as stream:
                    shape, dtype = _member_header(stream)
                    header = stream.tell()
                if dtype.hasobject:
                    if key == "random_state" and not written_by_ials:
                        log.info("%s: random_state holds a pickled object; skipped", where)
                        continue
                    raise _Refused(
                        f"entry {key!r} is an object array (pickled Python objects), which ials "
                        "never loads"
                    )
                _check_member_size(member, key, header, shape, dtype, archive_size)
                with archive.open(member) as stream:
                    arrays[key] = np.lib.format.read_array(stream, allow_pickle=False)
                    if stream.read(1):  # reading to the end also checks the member's CRC-32
                        raise _Refused(f"entry {key!r} has data after its array")
    except _Refused as err:
        raise ValueError(f"{where}: {err}") from err
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        OSError,
        ValueError,
        NotImplementedError,
        RuntimeError,
        struct.error,
        KeyError,
    ) as err:
        raise ValueError(
            f"{where} is not a valid model file (truncated or corrupted?): {err}"
        ) from err
    return arrays


def _read(fileobj_or_path: Any) -> tuple[dict[str, np.ndarray], str]:
    target = model_path(fileobj_or_path)
    if isinstance(target, str):
        with open(target, "rb") as handle:  # a missing file is FileNotFoundError, as usual
            return _read_archive(handle, target), target
    return _read_archive(target, "the model file"), "the model file"


def _scalar(where: str, entries: dict[str, np.ndarray], name: str, kind: str) -> Any:
    array = entries[name]
    if array.shape != ():
        raise ValueError(f"{where}: entry {name!r} must be a scalar, got shape {array.shape}")
    accepted = {"int": "iu", "float": "fiu", "bool": "b", "str": "U"}[kind]
    if array.dtype.kind not in accepted:
        raise ValueError(f"{where}: entry {name!r} must be a {kind}, got dtype {array.dtype}")
    value = array.item()
    return {"int": int, "float": float, "bool": bool, "str": str}[kind](value)


@dataclass
class _Parsed:
    parameters: dict[str, Any]
    user_factors: np.ndarray | None
    item_factors: np.ndarray | None
    interactions: tuple[sp.csr_matrix, np.ndarray, np.ndarray] | None
    note: str
    confidence: Transform | None = None


def _check_ials_header(where: str, entries: dict[str, np.ndarray]) -> str:
    name = _scalar(where, entries, "ials_format", "str")
    if name != FORMAT:
        raise ValueError(f"{where} holds a {name!r}, not a {FORMAT!r} model")
    for key in ("ials_format_version", "ials_checksum", "ials_note"):
        if key not in entries:
            raise ValueError(f"{where} has no {key!r} entry: the file is incomplete or was edited")
    version = _scalar(where, entries, "ials_format_version", "int")
    if version != VERSION:
        newer = " (written by a newer ials: upgrade to read it)" if version > VERSION else ""
        raise ValueError(
            f"{where} is model file format version {version}; this ials reads version "
            f"{VERSION}{newer}"
        )
    recorded = _scalar(where, entries, "ials_checksum", "str")
    if recorded != _checksum(entries):
        raise ValueError(
            f"{where} fails its checksum: the file was modified or corrupted after it was written"
        )
    allowed = set(_META) | set(_PARAMETERS) | set(_FACTORS) | set(_INTERACTIONS) | set(_CONFIDENCE)
    unknown = sorted(set(entries) - allowed)
    if unknown:
        raise ValueError(f"{where} holds unexpected entries: {', '.join(unknown)}")
    missing = sorted(set(_PARAMETERS) - _OPTIONAL_PARAMETERS - set(entries))
    if missing:
        raise ValueError(f"{where} lacks the parameters: {', '.join(missing)}")
    return str(_scalar(where, entries, "ials_note", "str"))


def _factors(
    where: str, entries: dict[str, np.ndarray], parameters: dict[str, Any]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    present = [name in entries for name in _FACTORS]
    if not any(present):
        return None, None
    if not all(present):
        raise ValueError(f"{where} has only one of user_factors and item_factors")
    dtype = np.dtype(parameters.get("dtype", "float32"))
    k = parameters.get("factors")
    checked = []
    for name in _FACTORS:
        array = entries[name]
        if array.ndim != 2 or array.dtype != dtype:
            raise ValueError(
                f"{where}: {name} must be a 2-D {dtype} array, got {array.dtype} "
                f"of shape {array.shape}"
            )
        if k is not None and array.shape[1] != k:
            raise ValueError(f"{where}: {name} has {array.shape[1]} columns but factors={k}")
        if array.size and not np.isfinite(array).all():
            raise ValueError(f"{where}: {name} holds a non-finite value")
        checked.append(np.require(array, requirements=["C", "W"]))
    if checked[0].shape[1] != checked[1].shape[1]:
        raise ValueError(f"{where}: user_factors and item_factors have different widths")
    return checked[0], checked[1]


def _interactions(
    where: str,
    entries: dict[str, np.ndarray],
    users: np.ndarray | None,
    items: np.ndarray | None,
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray] | None:
    present = [name in entries for name in _INTERACTIONS]
    if not any(present):
        return None
    if not all(present) or users is None or items is None:
        raise ValueError(f"{where}: the saved interactions are incomplete")
    user_ids, item_ids, indptr, indices, data = (entries[name] for name in _INTERACTIONS)
    for name, ids in (("user", user_ids), ("item", item_ids)):
        if ids.ndim != 1 or ids.dtype.kind not in "iU":
            raise ValueError(f"{where}: the saved {name} ids must be a 1-D int or str array")
    shape = (len(user_ids), len(item_ids))
    if shape != (users.shape[0], items.shape[0]):
        raise ValueError(
            f"{where}: the saved interactions are {shape[0]} x {shape[1]} but the factors are "
            f"for {users.shape[0]} users x {items.shape[0]} items"
        )
    if indptr.dtype.kind not in "iu" or indices.dtype.kind not in "iu" or data.dtype.kind != "f":
        raise ValueError(f"{where}: the saved interaction matrix has the wrong types")
    try:
        matrix = sp.csr_matrix((data, indices, indptr), shape=shape)
        matrix.check_format(full_check=True)
    except (ValueError, TypeError, IndexError) as err:
        raise ValueError(f"{where}: the saved interaction matrix is invalid: {err}") from None
    return matrix, user_ids, item_ids


def _parse(where: str, entries: dict[str, np.ndarray]) -> _Parsed:
    note = ""
    if "ials_format" in entries:
        note = _check_ials_header(where, entries)
    else:
        unknown = sorted(set(entries) - _IMPLICIT_KEYS)
        if unknown:
            raise ValueError(
                f"{where} is neither an ials model file nor an implicit AlternatingLeastSquares "
                f"file: unexpected entries {', '.join(unknown)}"
            )
        # implicit 0.7.3 writes every parameter but a None random_state (and no factors before
        # fit); a file without them is damaged.
        missing = sorted(_IMPLICIT_KEYS - set(_FACTORS) - {"random_state"} - set(entries))
        if missing:
            raise ValueError(
                f"{where} is not a complete implicit AlternatingLeastSquares file (no ials "
                f"format entry, and no {', '.join(missing)})"
            )
    parameters = {
        name: _scalar(where, entries, name, kind)
        for name, kind in _PARAMETERS.items()
        if name in entries
    }
    if "dtype" in parameters:
        try:
            parameters["dtype"] = check_dtype(parameters["dtype"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from err
    users, items = _factors(where, entries, parameters)
    interactions = _interactions(where, entries, users, items)
    return _Parsed(parameters, users, items, interactions, note, _confidence(where, entries))


def _confidence(where: str, entries: dict[str, np.ndarray]) -> Transform | None:
    """(name, alpha, eps) of the saved transform; its values are checked by ials.Confidence."""
    present = [name in entries for name in _CONFIDENCE]
    if not any(present):
        return None
    if not all(present):
        raise ValueError(f"{where}: the saved confidence transform is incomplete")
    name, alpha, eps = (_scalar(where, entries, key, kind) for key, kind in _CONFIDENCE.items())
    return str(name), float(alpha), float(eps)


def _load(fileobj_or_path: Any) -> _Parsed:
    entries, where = _read(fileobj_or_path)
    return _parse(where, entries)


def load_model(cls: Any, fileobj_or_path: Any) -> Any:
    """The model saved in a file written by ``save_model`` or by implicit 0.7.3's ``save``."""
    return _model(cls, _load(fileobj_or_path))


def _model(cls: Any, parsed: _Parsed) -> Any:
    if parsed.note:
        log.info("loaded model: %s", parsed.note)
    try:
        model = cls(**parsed.parameters)
    except (TypeError, ValueError) as err:
        raise ValueError(f"the model file holds an invalid parameter: {err}") from None
    model.user_factors = parsed.user_factors
    model.item_factors = parsed.item_factors
    return model


def load_bundle(
    cls: Any, fileobj_or_path: Any
) -> tuple[Any, tuple[sp.csr_matrix, np.ndarray, np.ndarray] | None, Transform | None]:
    """The model, its saved interactions and its confidence transform (None when absent)."""
    parsed = _load(fileobj_or_path)
    return _model(cls, parsed), parsed.interactions, parsed.confidence


def load_interactions(fileobj_or_path: Any) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """(matrix, user ids, item ids) saved with the model; ``ValueError`` when there are none."""
    parsed = _load(fileobj_or_path)
    if parsed.interactions is None:
        raise ValueError(
            "the model file holds no interactions: save it with model.save(path, interactions=...)"
        )
    return parsed.interactions
