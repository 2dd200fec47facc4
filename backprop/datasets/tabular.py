"""From a user's table of text cells to the numbers a network trains on, and back for predictions.

A Preprocessor decides, once, what each column is: a numeric feature (standardised; a column
constant in training gets scale 1, as scikit-learn's StandardScaler), a categorical one (one-hot,
categories remembered), an identifier (dropped, with a notice), or the target (classes, or for
regression a standardised value mapped back for predictions). Its statistics come from the
training rows only. ``to_dict``/``from_dict`` carry all of it inside a model file, so the file
alone turns raw rows into predictions.
"""
import collections
import re

import numpy

from backprop.datasets.csv_reader import MISSING, NUMBER, DataError, parse_number

NUMBERISH = re.compile(r"^[+-]?(inf(inity)?|nan|0x[0-9a-f]+|[\d_.]+([eE][+-]?[\d_]+)?)$", re.IGNORECASE)
IDENTIFIER_NAME = re.compile(r"^(|id|.*[_\- ]id|.*ID|index|uuid|key|row(_?num(ber)?)?|row_?names?|unnamed: ?0)$",
                             re.IGNORECASE)
MISSING_CHOICES = ("error", "drop", "mean")


def is_missing(cell):
    return cell.lower() in MISSING


class Preprocessor:
    """What each column is and the statistics that turn it into numbers; see the module docstring."""

    def __init__(self, columns, target, task, classes=None, target_scale=None, unseen="error", positions=None,
                 width=None):
        self.columns = columns        # [{"name", "kind": numeric|categorical, "shift", "scale" | "categories", "fill"}]
        self.target, self.task, self.classes = target, task, classes
        self.target_scale = target_scale  # (shift, scale) of a regression target
        self.unseen = unseen
        self.positions = positions or list(range(len(columns)))  # column positions in the training file
        self.width = width or len(columns)
        self.missing = "error"  # how missing cells were handled in training: predictions do the same

    # --- deciding and fitting -----------------------------------------------------------------------
    @classmethod
    def fit(cls, names, rows, target_index, task, train, chosen, unseen="error", path="data", lines=None):
        """Columns ``chosen`` (indices, see choose_columns) with statistics from the rows in ``train``."""
        lines = lines or list(range(1, len(rows) + 1))
        numeric = [numeric_column(names[i], i, [row[i] for row in rows], path, lines) for i in chosen]
        columns = []
        for index, is_numeric in zip(chosen, numeric):
            cells = [row[index] for row in rows]
            train_cells = [cells[i] for i in train]
            present = [c for c in train_cells if not is_missing(c)]
            if is_numeric:
                values = numpy.array([parse_number(c, path, 0, names[index], index + 1) for c in present])
                if not len(values):
                    raise DataError(f"{path}: column '{names[index]}' has no values in the training rows")
                mean, std = float(values.mean()), float(values.std())
                columns.append({"name": names[index], "kind": "numeric", "shift": mean, "scale": std if std > 0 else 1.0,
                                "fill": mean})
            else:  # categories from every row (their names, not statistics); the fill from the training rows
                categories = sorted({c for c in cells if not is_missing(c)})
                fill = max(set(present), key=present.count) if present else None
                columns.append({"name": names[index], "kind": "categorical", "categories": categories, "fill": fill})
        if not columns:
            raise DataError(f"{path}: no feature columns left (the table has only the target"
                            f"{' and dropped columns' if len(names) > 1 else ''})")
        return cls(columns, names[target_index], task, unseen=unseen, positions=list(chosen), width=len(names))

    @classmethod
    def for_arrays(cls, x_train, names, target, task, classes=None):
        """All-numeric columns from an array (bundled and toy data): standardised, constant columns scale 1."""
        x = numpy.asarray(x_train, dtype=numpy.float64)
        mean, std = x.mean(axis=0), x.std(axis=0)
        columns = [{"name": name, "kind": "numeric", "shift": float(m), "scale": float(s) if s > 0 else 1.0,
                    "fill": float(m)} for name, m, s in zip(names, mean, std)]
        return cls(columns, target, task, classes)

    def transform_array(self, x):
        """Standardise an all-numeric array laid out like the columns."""
        shift = numpy.array([c["shift"] for c in self.columns])
        scale = numpy.array([c["scale"] for c in self.columns])
        return ((numpy.asarray(x, numpy.float64) - shift) / scale).astype(numpy.float32)

    @property
    def numeric(self):
        return all(column["kind"] == "numeric" for column in self.columns)

    def fit_target(self, y_train):
        if self.task == "regression":
            y = numpy.asarray(y_train, dtype=numpy.float64)
            std = float(y.std())
            self.target_scale = (float(y.mean()), std if std > 0 else 1.0)

    # --- using -----------------------------------------------------------------------------------------
    @property
    def feature_names(self):
        """The model's input columns: numeric names, and 'name=category' for each one-hot column."""
        out = []
        for column in self.columns:
            if column["kind"] == "numeric":
                out.append(column["name"])
            else:
                out.extend(f"{column['name']}={category}" for category in column["categories"])
        return out

    @property
    def input_names(self):
        """The raw columns a file must have."""
        return [column["name"] for column in self.columns]

    def transform(self, header, rows, path="data", missing="error", lines=None):
        """Float32 features for raw rows; ``header`` names the file's columns (None: by position)."""
        positions = self._positions(header, path, len(rows[0]) if rows else 0)
        lines = lines or list(range(1, len(rows) + 1))
        blocks = []
        for column, position in zip(self.columns, positions):
            cells = [row[position] for row in rows]
            blocks.append(self._encode(column, cells, path, missing, lines, position))
        return numpy.concatenate(blocks, axis=1).astype(numpy.float32) if blocks else numpy.zeros((len(rows), 0))

    def _positions(self, header, path, width=None):
        if header is None:  # by position: the training file's layout, or exactly the feature columns
            if width == self.width:
                return self.positions
            if width == len(self.columns):
                return list(range(len(self.columns)))
            raise DataError(f"{path}: {width} columns and no header; the model needs {len(self.columns)} "
                            f"({', '.join(self.input_names)}), or the training file's {self.width}")
        counts = collections.Counter(header)
        repeated = sorted(name for name in set(self.input_names) if counts[name] > 1)
        if repeated:
            raise DataError(f"{path}: the header names column(s) {', '.join(repeated)} more than once")
        position = {name: i for i, name in enumerate(header)}
        absent = [name for name in self.input_names if name not in position]
        if absent:
            raise DataError(f"{path}: missing column(s) {', '.join(absent[:20])}; the model was trained on "
                            f"{', '.join(self.input_names[:20])}{' ...' if len(self.input_names) > 20 else ''}")
        return [position[name] for name in self.input_names]

    def _encode(self, column, cells, path, missing, lines, position):
        name = column["name"]
        if column["kind"] == "numeric":
            values = numpy.empty(len(cells))
            for i, cell in enumerate(cells):
                if is_missing(cell):
                    values[i] = _fill(column, path, lines[i], name, missing, position)
                elif not NUMBER.match(cell):
                    raise DataError(f"{path}:{lines[i]}: column '{name}': cannot parse '{cell}' as a number")
                else:
                    values[i] = float(cell)
            return ((values - column["shift"]) / column["scale"])[:, None]
        categories = column["categories"]
        lookup = {c: j for j, c in enumerate(categories)}
        encoded = numpy.zeros((len(cells), len(categories)))
        for i, cell in enumerate(cells):
            value = _fill(column, path, lines[i], name, missing, position) if is_missing(cell) else cell
            if value in lookup:
                encoded[i, lookup[value]] = 1.0
            elif self.unseen != "zeros":
                raise DataError(f"{path}:{lines[i]}: column '{name}': category '{value}' was not seen in training "
                                f"(known: {', '.join(categories[:8])}{', ...' if len(categories) > 8 else ''}); "
                                "a model trained with backprop train --unseen zeros encodes them as all-zero rows")
        return encoded

    def scale_target(self, y):
        if self.target_scale is None:
            return y
        shift, scale = self.target_scale
        return ((numpy.asarray(y, numpy.float64) - shift) / scale).astype(numpy.float32)

    def unscale_target(self, y):
        if self.target_scale is None:
            return y
        shift, scale = self.target_scale
        return numpy.asarray(y, numpy.float64) * scale + shift

    def to_dict(self):
        return {"columns": self.columns, "target": self.target, "task": self.task, "classes": self.classes,
                "target_scale": list(self.target_scale) if self.target_scale else None, "unseen": self.unseen,
                "positions": self.positions, "width": self.width, "missing": self.missing,
                "feature_names": self.feature_names}

    @classmethod
    def from_dict(cls, values, input_width=None, output_width=None):
        """The Preprocessor a model file carries, every field checked (it comes from a file we do not trust);
        given the model's input and output widths, the encoded features and classes must match them."""
        check_preprocessing(values, input_width, output_width)
        try:
            columns = [dict(c) for c in values["columns"]]
            scale = values.get("target_scale")
            preprocessor = cls(columns, values["target"], values["task"], values.get("classes"),
                               tuple(scale) if scale else None, values.get("unseen", "error"), values.get("positions"),
                               values.get("width"))
            preprocessor.missing = values.get("missing", "error")
            return preprocessor
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"malformed preprocessing ({error})") from None


MAX_COLUMNS = 100_000
MAX_CATEGORIES = 1_000_000  # in all columns together (without the model's widths to bound them)


def check_preprocessing(values, input_width=None, output_width=None):
    """Raise DataError naming the first field of a preprocessing dict that is not what backprop writes."""
    def fail(problem):
        raise DataError(f"malformed preprocessing: {problem}")

    def number(value, what, positive=False):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not numpy.isfinite(value) or \
                (positive and value <= 0):
            fail(f"{what} must be a finite{' positive' if positive else ''} number, got {value!r}")

    def text_list(value, what, limit):
        if not isinstance(value, list) or len(value) > limit or not all(isinstance(v, str) for v in value):
            fail(f"{what} must be a list of at most {limit:,} strings")

    if not isinstance(values, dict):
        fail(f"expected an object, got {type(values).__name__}")
    columns = values.get("columns")
    if not isinstance(columns, list) or not 0 < len(columns) <= MAX_COLUMNS:
        fail(f"'columns' must be a list of 1 to {MAX_COLUMNS:,} columns")
    categories = 0
    for i, column in enumerate(columns):
        if not isinstance(column, dict) or not isinstance(column.get("name"), str):
            fail(f"column {i} must be an object with a 'name'")
        kind = column.get("kind")
        if kind == "numeric":
            for key in ("shift", "fill"):
                number(column.get(key), f"column '{column['name']}': {key}")
            number(column.get("scale"), f"column '{column['name']}': scale", positive=True)
        elif kind == "categorical":
            text_list(column.get("categories"), f"column '{column['name']}': categories", MAX_CATEGORIES)
            categories += len(column["categories"])
            if column.get("fill") is not None and not isinstance(column["fill"], str):
                fail(f"column '{column['name']}': fill must be a string or null")
        else:
            fail(f"column '{column['name']}': unknown kind {kind!r}")
    if categories > MAX_CATEGORIES:
        fail(f"{categories:,} categories in all (at most {MAX_CATEGORIES:,})")
    if not isinstance(values.get("target"), str) or values.get("task") not in ("classification", "regression"):
        fail("'target' must be a name and 'task' classification or regression")
    if values.get("classes") is not None:
        text_list(values["classes"], "classes", MAX_COLUMNS)
    if values.get("task") == "classification" and values.get("classes") is None:
        fail("a classification needs its 'classes'")
    scale = values.get("target_scale")
    if scale is not None:
        if not isinstance(scale, list) or len(scale) != 2:
            fail("target_scale must be [shift, scale]")
        number(scale[0], "target_scale's shift")
        number(scale[1], "target_scale's scale", positive=True)
    if values.get("unseen", "error") not in ("error", "zeros") or values.get("missing", "error") not in MISSING_CHOICES:
        fail("'unseen' must be error or zeros and 'missing' one of " + ", ".join(MISSING_CHOICES))
    width = values.get("width", len(columns))
    if isinstance(width, bool) or not isinstance(width, int) or not len(columns) <= width <= MAX_COLUMNS:
        fail(f"'width' must be a whole number from {len(columns)} to {MAX_COLUMNS:,}, got {width!r}")
    positions = values.get("positions")
    if positions is not None and (not isinstance(positions, list) or len(positions) != len(columns) or
                                  not all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p < width
                                          for p in positions) or len(set(positions)) != len(positions)):
        fail(f"'positions' must be {len(columns)} different column positions below the width {width}")
    encoded = sum(1 if c["kind"] == "numeric" else len(c["categories"]) for c in columns)
    if input_width is not None and encoded != input_width:
        fail(f"its columns encode {encoded:,} features, the model takes {input_width:,}")
    classes = values.get("classes")
    if output_width is not None and classes is not None and len(classes) != output_width and \
            not (len(classes) == 2 and output_width == 1):
        fail(f"{len(classes):,} classes for a model with {output_width} outputs")


def numeric_column(name, index, cells, path, lines):
    """True when every present cell is a number; False for a text column (mostly words: categorical). A
    cell that is almost a number (inf, 1_000, 0x1f), or a word in a mostly numeric column, is an error
    naming its line and column."""
    present = [(i, c) for i, c in enumerate(cells) if not is_missing(c)]
    text = [(i, c) for i, c in present if not NUMBER.match(c)]
    if not text:
        for i, cell in present:
            parse_number(cell, path, lines[i], name, index + 1)  # 1e400: out of range
        return True
    odd = next(((i, c) for i, c in text if NUMBERISH.match(c)), None)
    if odd is None and len(text) * 2 > len(present):
        return False
    row, cell = odd or text[0]
    raise DataError(f"{path}:{lines[row]}: column '{name}' ({index + 1}): cannot parse '{cell}' as a number")


def _fill(column, path, line, name, missing, position):
    if missing == "error":
        raise DataError(f"{path}:{line}: column '{name}' ({position + 1}): missing value (backprop "
                        "train --missing drop or --missing mean handles it)")
    return column["fill"]


def choose_columns(names, rows, target_index, features, drop, notices, path):
    """Indices of the feature columns: ``features`` if given, else all but the target, ``drop`` and
    columns that look like identifiers (each dropped one adds a line to ``notices``)."""
    position = {name: i for i, name in enumerate(names)}
    unknown = [n for n in list(features or []) + list(drop) if n not in position]
    if unknown:
        raise DataError(f"{path}: no column named {', '.join(unknown)}; columns: {', '.join(names)}")
    if target_index is not None and names[target_index] in (features or []):
        raise DataError(f"{path}: '{names[target_index]}' is the target; it cannot also be a feature")
    if features:
        return [position[n] for n in features]
    chosen = []
    for index, name in enumerate(names):
        if index == target_index or name in drop:
            continue
        reason = _identifier_reason(name, [row[index] for row in rows])
        if reason:
            notices.append(f"dropped column '{name}': {reason} (keep it with --features)")
            continue
        chosen.append(index)
    return chosen


WHEN_NAME = re.compile(r"^(year|yr|date|time|timestamp|datetime|month|day|week|hour|minute|second)s?$", re.IGNORECASE)


def implausible_target(name, cells):
    """Why a column given no --target (the last one) is unlikely to be what the user wants to predict, or None."""
    if WHEN_NAME.match(name):
        return "says when a row was recorded"
    reason = _identifier_reason(name, cells)
    return f"looks like an identifier ({reason})" if reason else None


def _identifier_reason(name, cells):
    """Why a column looks like a row identifier rather than a feature, or None."""
    present = [c for c in cells if not is_missing(c)]
    if len(present) < 10 or len(set(present)) < len(present):
        return None
    numbers = sum(1 for c in present if NUMBER.match(c))
    if numbers < len(present):  # a few stray cells in a numeric column are errors for numeric_column to name
        return "a different text value in every row, like an identifier" if numbers * 2 <= len(present) else None
    values = numpy.array([float(c) for c in present])
    if not numpy.all(values == numpy.round(values)):
        return None
    if IDENTIFIER_NAME.match(name):
        return "named like an identifier, with a different whole number in every row"
    if numpy.all(numpy.diff(numpy.sort(values)) == 1):
        return "the numbers of a row counter (every value from the smallest to the largest once)"
    if numpy.all(numpy.diff(values) > 0):
        return "a different whole number in every row, rising from the first row to the last, like row numbers"
    return None
