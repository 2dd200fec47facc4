"""MNIST's IDX format: big-endian magic (0x00 0x00 type ndim), dims, then raw values; gzip optional."""
import gzip
import math
import os
import struct

import numpy

from backprop.datasets.csv_reader import DataError, check_readable

TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MAX_BYTES = 2 ** 32  # refuse to allocate more than 4 GiB from a header's dimensions


MAX_DIMENSIONS = 8


def _read_bounded(path):
    """The file's bytes, gzip decompressed in chunks: the first chunk's header bounds the rest, so a small
    .gz holding gigabytes of zeros is refused after a megabyte instead of filling memory."""
    with open(path, "rb") as handle:
        if handle.read(2) != b"\x1f\x8b":
            handle.seek(0)
            return handle.read()
        handle.seek(0)
        chunks, total, limit = [], 0, None
        try:
            with gzip.GzipFile(fileobj=handle) as stream:
                while chunk := stream.read(1 << 20):
                    if limit is None:  # the first chunk holds the header
                        dtype, dims, offset = _check_header(chunk, path, total_known=False)
                        limit = offset + math.prod(dims) * dtype.itemsize
                    total += len(chunk)
                    if total > limit:
                        raise DataError(f"{path}: decompresses to more than its dimensions hold ({limit} bytes)")
                    chunks.append(chunk)
        except (OSError, EOFError) as error:
            raise DataError(f"{path}: corrupt gzip data ({error})") from None
        return b"".join(chunks)


def _check_header(data, path, total_known=True):
    """(dtype, dims, header size) after checking magic, dimensions and (with the whole file) its size."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in TYPES or data[3] == 0:
        raise DataError(f"{path}: not an IDX file (bad magic {data[:4].hex() or 'empty'})")
    dtype, ndim = numpy.dtype(TYPES[data[2]]), data[3]
    if ndim > MAX_DIMENSIONS:
        raise DataError(f"{path}: {ndim} dimensions (at most {MAX_DIMENSIONS})")
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    needed = math.prod(dims) * dtype.itemsize
    if needed > MAX_BYTES:
        raise DataError(f"{path}: dimensions {dims} would need {needed} bytes; refusing")
    if total_known and len(data) != 4 + 4 * ndim + needed:
        raise DataError(f"{path}: size {len(data)} bytes does not match dimensions {dims} "
                        f"({4 + 4 * ndim + needed} expected)")
    if not total_known and len(data) > 4 + 4 * ndim + needed:
        raise DataError(f"{path}: more data than its dimensions {dims} hold")
    return dtype, dims, 4 + 4 * ndim


def read_idx(path):
    """One IDX file as an array, after checking magic, dimensions and the exact file size."""
    path = check_readable(path, "IDX file")
    data = _read_bounded(path)
    dtype, dims, offset = _check_header(data, path)
    if 0 in dims:
        raise DataError(f"{path}: dimensions {dims} hold no values")
    return numpy.frombuffer(data, dtype=dtype, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))


def load_idx(images_path, labels_path, flatten=True):
    """MNIST-format images (0x00000803) and labels (0x00000801) as (float32 x, int64 y)."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim < 2:
        raise DataError(f"{os.fspath(images_path)}: expected images (3 dimensions), got {images.ndim}")
    if labels.ndim != 1:
        raise DataError(f"{os.fspath(labels_path)}: expected labels (1 dimension), got {labels.ndim}")
    if len(images) != len(labels):
        raise DataError(f"{len(images)} images but {len(labels)} labels")
    if labels.dtype.kind == "f" and not numpy.all(numpy.isfinite(labels) & (labels == numpy.round(labels))):
        raise DataError(f"{os.fspath(labels_path)}: labels must be whole numbers (found NaN, Inf or fractions)")
    if labels.min() < 0:
        raise DataError(f"{os.fspath(labels_path)}: label {labels.min()} is negative")
    x = images.reshape(len(images), -1) if flatten else images
    return x.astype(numpy.float32), labels.astype(numpy.int64)


def write_idx(path, array):
    """Write an array in IDX format (uint8, int8, int16, int32, float32 or float64)."""
    array = numpy.asarray(array)
    codes = {numpy.dtype(v).newbyteorder("="): k for k, v in TYPES.items()}
    code = codes[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with open(path, "wb") as handle:
        handle.write(header + array.astype(TYPES[code]).tobytes())
