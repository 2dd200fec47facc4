"""Read a user's CSV file into features and a target, with errors that name file, line, column and value."""
import csv
import io
import os
import re
from dataclasses import dataclass, field

import numpy

FLOAT32_MAX = float(numpy.finfo(numpy.float32).max)
MISSING = {"", "na", "n/a", "nan", "null", "none", "?", "-"}
NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")  # no nan, inf, 1_000, hex


class DataError(ValueError):
    """Bad data in a user's file: the message says where and what."""


@dataclass
class Table:
    """Features ``x`` (float32), target ``y``, and what is needed to read new files the same way."""
    x: numpy.ndarray
    y: numpy.ndarray
    feature_names: list
    target: str
    classes: list = field(default=None)  # class names of a categorical target, index = label
    task: str = "classification"


READ_FACTOR = 8  # a table read into cells and numbers takes about 6 times its file's size (measured: issue #29)
MAX_FILE_BYTES = 2 << 30  # a CSV read into memory whole: 2 GiB at most


def check_readable(path, what="data file"):
    """The path, if it is a readable regular file of a bounded size (never a device or a pipe, which can be
    endless: /dev/zero)."""
    import stat
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} '{path}' not found")
    if os.path.isdir(path):
        raise DataError(f"{what} '{path}' is a directory")
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{what} '{path}' is not a regular file (a device, pipe or socket)")
    if info.st_size > MAX_FILE_BYTES:
        raise DataError(f"{what} '{path}' is {info.st_size / 2 ** 30:.1f} GiB; at most {MAX_FILE_BYTES >> 30} GiB")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    if memory and info.st_size * READ_FACTOR > 0.75 * memory:
        raise DataError(f"{what} '{path}' is {info.st_size / 2 ** 30:.1f} GiB: reading it as a table needs about "
                        f"{info.st_size * READ_FACTOR / 2 ** 30:.0f} GiB, more than this machine's "
                        f"{memory / 2 ** 30:.0f} GiB allow; take a sample of its rows")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"{what} '{path}': permission denied")
    return path


def read_rows(path, delimiter=None, text=None):
    """(line number, fields) for every non-blank row; BOM and CRLF handled, quotes respected. ``text``, when
    given, is the file's content already read (an upload); ``path`` then only names it in messages."""
    if text is None:
        path = check_readable(path)
        try:
            with open(path, newline="", encoding="utf-8-sig") as handle:
                text = handle.read(MAX_FILE_BYTES + 1)
        except UnicodeDecodeError as error:
            raise DataError(f"{path}: not a UTF-8 text file ({error.reason} at byte {error.start})") from None
        except OSError as error:  # /proc/self/mem, a file on a failing disk
            raise DataError(f"{path}: cannot be read ({error.strerror or error})") from None
    text = text.removeprefix("\ufeff")
    if delimiter is None:
        first = next((line for line in text.splitlines() if line.strip()), "")
        delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)  # quotes may hold newlines
    rows = []
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((reader.line_num, [cell.strip() for cell in row]))
    except csv.Error as error:
        raise DataError(f"{path}:{reader.line_num + 1}: {error}") from None
    if delimiter == ";":  # the European convention: decimal commas (39,1 and 1.234,5)
        rows = [(line, [_decimal_point(cell) for cell in cells]) for line, cells in rows]
    return rows  # csv refuses a field over 131,072 characters itself (an error above)


DECIMAL_COMMA = re.compile(r"^[+-]?(\d{1,3}(\.\d{3})+|\d*),\d+([eE][+-]?\d+)?$")


def _decimal_point(cell):
    """'39,1' -> '39.1' and '1.234,5' -> '1234.5' in a ';'-separated file; any other cell unchanged."""
    return cell.replace(".", "").replace(",", ".") if DECIMAL_COMMA.match(cell) else cell


def parse_number(text, path, line, name, index):
    if text.lower() in MISSING:
        raise DataError(f"{path}:{line}: column '{name}' ({index}): missing value")
    if not NUMBER.match(text):
        raise DataError(f"{path}:{line}: column '{name}' ({index}): cannot parse '{text}' as a number")
    value = float(text)
    if not numpy.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise DataError(f"{path}:{line}: column '{name}' ({index}): value '{text}' is out of range (beyond float32)")
    return value


def numbers(rows, names, path, columns):
    """The cells of ``columns`` (indices) of (line, cells) rows as a float64 array, each checked like any number."""
    return numpy.array([[parse_number(row[i], path, line, names[i], i + 1) for i in columns] for line, row in rows],
                       dtype=numpy.float64).reshape(len(rows), len(columns))


def _has_header(first_row):
    return any(not NUMBER.match(cell) for cell in first_row)


def read_table(path, delimiter=None, expected_names=None):
    """(header, rows): the header's names (None when the first row is data) and the data rows as
    (line number, cells), every row checked to have the same number of fields. The first row is a
    header when it holds all of ``expected_names``, or, without them, when any cell is not a number."""
    path = os.fspath(path)
    rows = read_rows(path, delimiter)
    if not rows:
        raise DataError(f"{path}: no data rows (the file is empty)")
    first = rows[0][1]
    is_header = set(expected_names) <= set(first) if expected_names else _has_header(first)
    if expected_names and not is_header and _has_header(first) and not any(NUMBER.match(c) for c in first):
        is_header = True  # a header with other names: reported by the caller, which knows the names
    header = first if is_header else None
    rows = rows[1:] if header is not None else rows
    if not rows:
        raise DataError(f"{path}: no data rows (only a header)")
    width = len(header) if header is not None else len(rows[0][1])
    for line, cells in rows:
        if len(cells) != width:
            raise DataError(f"{path}:{line}: {len(cells)} fields, expected {width}"
                            f"{' (from header)' if header is not None else ''}")
    return header, rows


def target_index(target, names, path):
    """The target column's index from a name or a (command-line) index; the last column by default."""
    return _target_index(target, names, path)


def parse_target(rows, index, name, path, task, classes=None):
    """(y, classes, task) from the target cells of ``rows`` ((line, cells) pairs)."""
    return _target(rows, index, name, path, task, classes)


def load_csv(path, target=None, delimiter=None, header="auto", missing="error", task="auto", classes=None, text=None):
    """Read ``path`` into a Table. ``target`` is a column name or index (default: the last column).

    Missing cells (empty, NA, ?, nan ...) are an error unless ``missing="drop"`` drops their rows.
    A non-numeric target is categorical: its values become class indices (``Table.classes``).
    ``task`` is "classification", "regression" or "auto" (integers with at most 20 values: classification).
    ``text`` is the file's content when it was read already (an upload named ``path``).
    """
    path = os.fspath(path)
    rows = read_rows(path, delimiter, text)
    if not rows:
        raise DataError(f"{path}: no data rows (the file is empty)")
    if header is True or (header == "auto" and _has_header(rows[0][1])):
        names, rows = rows[0][1], rows[1:]
    else:
        names = [f"column_{i + 1}" for i in range(len(rows[0][1]))]
    if not rows:
        raise DataError(f"{path}: no data rows (only a header)")
    target_index = _target_index(target, names, path)
    for line, cells in rows:
        if len(cells) != len(names):
            raise DataError(f"{path}:{line}: {len(cells)} fields, expected {len(names)} (from header)")
    if missing == "drop":
        rows = [(line, cells) for line, cells in rows if not any(c.lower() in MISSING for c in cells)]
        if not rows:
            raise DataError(f"{path}: no data rows left after dropping rows with missing values")
    elif missing != "error":
        raise ValueError(f"missing must be 'error' or 'drop', got {missing!r}")
    feature_columns = [i for i in range(len(names)) if i != target_index]
    x = numpy.array([[parse_number(cells[i], path, line, names[i], i + 1) for i in feature_columns]
                     for line, cells in rows], dtype=numpy.float32).reshape(len(rows), len(feature_columns))
    y, classes, task = _target(rows, target_index, names[target_index], path, task, classes)
    return Table(x, y, [names[i] for i in feature_columns], names[target_index], classes, task)


def _target_index(target, names, path):
    if target is None:
        return len(names) - 1
    if isinstance(target, str) and target not in names and target.lstrip("-").isdigit():
        target = int(target)  # a column index given on the command line
    if isinstance(target, int):
        if not -len(names) <= target < len(names):
            raise DataError(f"{path}: target column {target} does not exist; the file has {len(names)} columns")
        return target % len(names)
    if target not in names:
        raise DataError(f"{path}: target '{target}' not found; columns: {', '.join(names)}")
    return names.index(target)


def _target(rows, index, name, path, task, classes):
    cells = [(line, row[index]) for line, row in rows]
    for line, cell in cells:
        if cell.lower() in MISSING:
            raise DataError(f"{path}:{line}: column '{name}' ({index + 1}): missing target value "
                            "(backprop train --missing drop drops such rows)")
    numbers = sum(1 for _, cell in cells if NUMBER.match(cell))
    numeric = numbers == len(cells)
    if classes is None and not numeric and numbers * 2 > len(cells) and task != "classification":
        line, cell = next((line, cell) for line, cell in cells if not NUMBER.match(cell))  # a stray cell, not classes
        raise DataError(f"{path}:{line}: column '{name}' ({index + 1}): cannot parse '{cell}' as a number (the "
                        "other values are numbers; --task classification reads them all as class names)")
    if classes is not None or not numeric:
        if task == "regression":
            bad = next((line, cell) for line, cell in cells if not NUMBER.match(cell))
            raise DataError(f"{path}:{bad[0]}: column '{name}' ({index + 1}): cannot parse '{bad[1]}' as a number")
        classes = list(classes) if classes is not None else sorted({cell for _, cell in cells})
        indices = [_class_index(cell, classes) for _, cell in cells]
        unknown = next(((line, cell) for (line, cell), i in zip(cells, indices) if i is None), None)
        if unknown:
            raise DataError(f"{path}:{unknown[0]}: column '{name}': unknown class '{unknown[1]}'; the model knows "
                            f"{', '.join(classes)}")
        return numpy.array(indices, dtype=numpy.int64), classes, "classification"
    values = numpy.array([parse_number(cell, path, line, name, index + 1) for line, cell in cells])
    if task == "auto":
        whole = numpy.all(values == numpy.round(values)) and values.min() >= 0
        task = "classification" if whole and len(numpy.unique(values)) <= 20 else "regression"
    if task == "classification":
        if not numpy.all(values == numpy.round(values)) or values.min() < 0:
            raise DataError(f"{path}: column '{name}': classification needs whole, non-negative class labels")
        return values.astype(numpy.int64), None, task
    if task != "regression":
        raise ValueError(f"task must be 'auto', 'classification' or 'regression', got {task!r}")
    return values.astype(numpy.float32), None, task


def _class_index(cell, classes):
    """The position of ``cell`` among ``classes``; a number matches a numeric class of the same value ('2.0'
    is class '2'). None when it is none of them."""
    if cell in classes:
        return classes.index(cell)
    if NUMBER.match(cell):
        return next((i for i, c in enumerate(classes) if NUMBER.match(c) and float(c) == float(cell)), None)
    return None


def load_features(path, feature_names, ignore=()):
    """Feature rows for prediction, in the order of ``feature_names``.

    With a header naming every feature, columns are picked by name (others are ignored);
    otherwise all columns except those named in ``ignore`` (a target column) are used, in order.
    """
    path = os.fspath(path)
    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path}: no data rows (the file is empty)")
    columns = rows[0][1] if _has_header(rows[0][1]) else None
    rows = rows[1:] if columns is not None else rows
    if not rows:
        raise DataError(f"{path}: no data rows (only a header)")
    width = len(columns) if columns is not None else len(rows[0][1])
    if columns is not None and all(name in columns for name in feature_names):
        indices = [columns.index(name) for name in feature_names]
    else:
        indices = [i for i in range(width) if columns is None or columns[i] not in ignore]
        if len(indices) != len(feature_names):
            shown = ", ".join(feature_names[:6]) + (", ..." if len(feature_names) > 6 else "")
            raise DataError(f"{path}: {len(indices)} feature columns, but the model was trained on "
                            f"{len(feature_names)} ({shown})")
    x = numpy.empty((len(rows), len(indices)), dtype=numpy.float32)
    for r, (line, cells) in enumerate(rows):
        if len(cells) != width:
            raise DataError(f"{path}:{line}: {len(cells)} fields, expected {width}")
        for c, i in enumerate(indices):
            x[r, c] = parse_number(cells[i], path, line, columns[i] if columns else f"column_{i + 1}", i + 1)
    return x
