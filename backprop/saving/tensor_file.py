"""Read and write the safetensors format with NumPy alone, validating everything before allocating.

Layout: 8-byte little-endian header length N, N bytes of JSON header
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``),
then the raw little-endian tensor bytes. Files written here load with the ``safetensors``
package and back. Loading never executes code: there is nothing to execute.
"""
import errno
import json
import math
import os
import stat
import struct
import tempfile

import numpy

from backprop.saving import bounded_json

MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit
MAX_TENSORS = 65_536
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
          "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?"}
CODES = {numpy.dtype(v): k for k, v in DTYPES.items()}


class FileFormatError(ValueError):
    """A model or weights file that cannot be loaded; the message names the file and the problem."""


def write(path, tensors, metadata=None):
    """Atomically write ``{name: array}`` and string metadata: a crash never leaves a half-written file."""
    atomic_write(path, encode(tensors, metadata))


def encode(tensors, metadata=None):
    """The file's bytes, as chunks: header length, JSON header, then each array's raw bytes."""
    header, offset = {}, 0
    arrays = []
    for name, array in tensors.items():
        array = numpy.asarray(array, order="C")  # (ascontiguousarray would turn 0-d into 1-d)
        if array.dtype not in CODES:
            raise TypeError(f"cannot save tensor {name!r} of dtype {array.dtype}")
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        header[name] = {"dtype": CODES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
        arrays.append(array)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    return [struct.pack("<Q", len(blob)), blob] + [a.tobytes() for a in arrays]


class UnwritableOutput(OSError):
    """An output path that backprop will not write: a directory, a block device, a pipe nobody reads."""


def atomic_write(path, chunks):
    """Write to a temporary file beside ``path``, fsync, then rename over it. A character device or a pipe
    (``/dev/null``, ``/dev/stdout``) is written to as a stream; any other file that is not a regular file
    (a directory, a block device, a socket) is refused: nothing is ever renamed over it."""
    path = os.fspath(path)
    kind = _file_kind(path)
    if kind == "stream":
        with _open_stream(path) as handle:
            for chunk in chunks:
                handle.write(chunk)
        return
    if kind != "regular":
        raise UnwritableOutput(f"'{path}' is {kind}, not a regular file; nothing was written (choose a file path)")
    path = os.path.realpath(path)  # a link to a file: the file is replaced, the link stays
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.fchmod(fd, 0o666 & ~mask)  # mkstemp makes 0600: follow the umask like every other file
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _file_kind(path):
    """'regular' (or absent), 'stream' (a character device or a pipe), or what else ``path`` is, in words."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "regular"
    if stat.S_ISREG(mode):  # /dev/stdout redirected to a file is written through, not replaced
        system = ("/proc/", "/dev/")
        return "stream" if os.path.abspath(path).startswith(system) or os.path.realpath(path).startswith(system) \
            else "regular"
    return "stream" if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) else _described(mode)


def _described(mode):
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISFIFO, "a pipe"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]
    return next((words for test, words in kinds if test(mode)), "not a regular file")


def _open_stream(path):
    """A device or pipe opened for writing; a pipe nobody reads is refused at once rather than waited on."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == errno.ENXIO:
            raise UnwritableOutput(f"'{path}' is a pipe that no process is reading; nothing was written") from None
        raise
    os.set_blocking(fd, True)
    return os.fdopen(fd, "wb")


def read(path, allow_nonfinite=False):
    """Return ``(tensors, metadata)``; raise FileFormatError for anything malformed."""
    path = os.fspath(path)
    return decode(_read_bytes(path), path, allow_nonfinite)


def decode(data, name, allow_nonfinite=False):
    """``(tensors, metadata)`` from a file's bytes (``encode``'s, joined); errors name ``name``."""
    fail = lambda problem: FileFormatError(f"{name}: {problem}")  # noqa: E731
    if len(data) < 8:
        raise fail(f"truncated file ({len(data)} bytes): not a backprop model file")
    (size,) = struct.unpack("<Q", data[:8])
    if size > MAX_HEADER_BYTES:
        raise fail(f"not a backprop model file (bad magic {data[:8]!r}: header length {size} exceeds the limit)")
    if 8 + size > len(data):
        raise fail(f"truncated file: header of {size} bytes announced, {len(data) - 8} present")
    try:
        header = bounded_json.loads(data[8:8 + size].decode("utf-8"), MAX_HEADER_BYTES, "the header",
                                    object_pairs_hook=_unique_keys)
    except DuplicateKey as duplicate:
        raise fail(f"duplicate tensor name {duplicate.args[0]!r}") from None
    except json.JSONDecodeError:
        raise fail(f"not a backprop model file (bad magic {data[:8]!r}: header is not JSON)") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise fail(f"not a backprop model file ({error})") from None
    if not isinstance(header, dict):
        raise fail("not a backprop model file (header is not a JSON object)")
    if len(header) > MAX_TENSORS:
        raise fail(f"{len(header):,} tensors (at most {MAX_TENSORS:,})")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise fail("malformed metadata: expected a mapping of strings")
    body = memoryview(data)[8 + size:]
    tensors = _parse_tensors(header, body, fail)
    if not allow_nonfinite:
        for name, array in tensors.items():
            if array.dtype.kind == "f" and not numpy.isfinite(array).all():
                raise fail(f"tensor {name!r} holds NaN or Inf values (pass allow_nonfinite=True to load anyway)")
    return tensors, metadata


class DuplicateKey(Exception):
    pass


def _unique_keys(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey(key)
        result[key] = value
    return result


def _read_bytes(path):
    """The whole file, unless its first 8 bytes already announce an impossible header (then just those). Only a
    regular file is read: a pipe could block forever and /dev/zero never ends."""
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise FileFormatError(f"{path}: is {_described(mode)}, not a model file")
        with open(path, "rb") as handle:
            start = handle.read(8)
            if len(start) == 8 and struct.unpack("<Q", start)[0] > MAX_HEADER_BYTES:
                return start
            return start + handle.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"model file '{path}' not found") from None
    except IsADirectoryError:
        raise FileFormatError(f"{path}: is a directory, not a model file") from None


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_tensors(header, body, fail):
    spans, tensors = [], {}
    for name, spec in header.items():
        if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
            raise fail(f"tensor {name!r}: malformed entry")
        dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise fail(f"tensor {name!r}: unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or not all(_whole(d) and d >= 0 for d in shape):
            raise fail(f"tensor {name!r}: malformed shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_whole(o) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= len(body)):
            raise fail(f"tensor {name!r}: data offsets {offsets!r} are outside the {len(body)}-byte data section")
        itemsize = numpy.dtype(DTYPES[dtype]).itemsize
        expected = math.prod(shape) * itemsize  # exact Python ints: no overflow, nothing allocated
        if offsets[1] - offsets[0] != expected:
            raise fail(f"tensor {name!r}: {offsets[1] - offsets[0]} bytes stored, shape {shape} needs {expected}")
        spans.append((offsets[0], offsets[1], name))
        tensors[name] = (dtype, shape, offsets)
    spans.sort()
    position = 0
    for begin, end, name in spans:
        if begin != position:
            raise fail(f"tensor {name!r}: data offsets overlap or leave a gap at byte {position}")
        position = end
    if position != len(body):
        raise fail(f"truncated or padded file: data section is {len(body)} bytes, tensors cover {position}")
    return {name: numpy.frombuffer(body[o[0]:o[1]], dtype=DTYPES[d]).reshape(s).copy()
            for name, (d, s, o) in tensors.items()}
