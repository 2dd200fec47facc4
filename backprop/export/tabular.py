"""ONNX for a CLI run: the run's preprocessing before the model and its predictions after it, so the file
takes the raw feature values ``backprop predict`` takes and gives what it prints.

Inputs: ``features`` (float32, batch x numeric columns, in the table's order) and one string input of
shape (batch,) per categorical column, named after the column. Numeric columns are standardised with the
training statistics; categories become one-hot rows (an unseen category gives zeros), compared as
``predict`` compares them: without surrounding whitespace. A missing value (NaN for a number; for a
category an empty cell, NA, ?, ... as the CSV reader knows them) is filled as ``predict`` fills it when
the run used ``--missing mean`` or ``drop`` (the training mean, the most frequent category). Outputs:
``prediction`` (a value per row, or the class name) and, for classification, ``probabilities``.
"""
import json

from backprop.datasets.csv_reader import MISSING
from backprop.export import onnx as onnx_export
from backprop.xp import np

# What Python's str.strip() removes around a cell, in RE2's syntax (RegexFullMatch).
_SPACE = r"[\s\v\x{1c}-\x{1f}\x{85}\p{Z}]*"


def _literal(text):
    """``text`` as an RE2 pattern matching exactly it."""
    return "".join(c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):x}}}" for c in text)


def _is(e, cells, pattern):
    """Float 1.0 where a cell, stripped, matches ``pattern`` (RE2), else 0.0: a (batch,) tensor."""
    return e.node("Cast", [e.node("RegexFullMatch", [cells], pattern=_SPACE + pattern + _SPACE)],
                  to=e.onnx.TensorProto.FLOAT)


def _inputs(e, preprocessor):
    """(graph inputs, the name of the model's input) built from the raw columns."""
    helper, proto = e.helper, e.onnx.TensorProto
    numeric = [c for c in preprocessor.columns if c["kind"] == "numeric"]
    graph_inputs, blocks = [], []
    if numeric:
        e.names.add("features")
        graph_inputs.append(helper.make_tensor_value_info("features", proto.FLOAT, [onnx_export.BATCH, len(numeric)]))
        values = "features"
        if preprocessor.missing != "error":  # predict fills missing numbers with the training mean
            fill = e.constant(np.array([c["fill"] for c in numeric], np.float32), stem="fill")
            values = e.node("Where", [e.node("IsNaN", [values]), fill, values])
        shift = e.constant(np.array([c["shift"] for c in numeric], np.float32), stem="shift")
        scale = e.constant(np.array([c["scale"] for c in numeric], np.float32), stem="scale")
        scaled = e.node("Div", [e.node("Sub", [values, shift]), scale])
    position = 0
    for column in preprocessor.columns:
        if column["kind"] == "numeric":
            index = e.constant(np.array([position], np.int64), stem="column")
            blocks.append(e.node("Gather", [scaled, index], axis=1))
            position += 1
            continue
        name = column["name"]
        e.names.add(name)
        graph_inputs.append(helper.make_tensor_value_info(name, proto.STRING, [onnx_export.BATCH]))
        blocks.append(_one_hot(e, name, column, preprocessor.missing != "error"))
    joined = e.node("Concat", blocks, axis=1) if len(blocks) > 1 else blocks[0]
    return graph_inputs, joined


def _one_hot(e, cells, column, fill_missing):
    """(batch, categories) one-hot rows of a string input; a missing cell counts as the column's fill."""
    missing = _is(e, cells, "(?i:" + "|".join(_literal(m) for m in sorted(MISSING)) + ")") \
        if fill_missing and column.get("fill") is not None else None
    axes = e.constant(np.array([1], np.int64), stem="axes")
    rows = []
    for category in column["categories"]:
        hit = _is(e, cells, _literal(category))
        if missing is not None and category == column["fill"]:
            hit = e.node("Max", [hit, missing])
        rows.append(e.node("Unsqueeze", [hit, axes]))
    return e.node("Concat", rows, axis=1) if len(rows) > 1 else rows[0]


def _outputs(e, preprocessor, scores):
    """[(result, value info)] for the run's predictions from the model's outputs."""
    helper, proto = e.helper, e.onnx.TensorProto
    if preprocessor.task == "regression":
        shift, scale = preprocessor.target_scale or (0.0, 1.0)
        value = e.node("Add", [e.node("Mul", [scores, e.constant(np.float32(scale))]), e.constant(np.float32(shift))])
        value = e.node("Squeeze", [value, e.constant(np.array([1], np.int64), stem="axes")])
        return [(value, helper.make_tensor_value_info("prediction", proto.FLOAT, [onnx_export.BATCH]))]
    return _class_outputs(e, [str(c) for c in preprocessor.classes], scores)


def _class_outputs(e, classes, scores):
    helper, proto = e.helper, e.onnx.TensorProto
    if len(classes) == 2:  # one logit: p = sigmoid(score), probabilities [1 - p, p]
        p = e.node("Sigmoid", [scores])
        probabilities = e.node("Concat", [e.node("Sub", [e.constant(np.float32(1.0)), p]), p], axis=1)
    else:
        probabilities = e.node("Softmax", [scores], axis=1)
    index = e.node("ArgMax", [probabilities], axis=1, keepdims=0)
    label = e.node("Gather", [e.constant(np.array(classes, dtype=object), stem="classes"), index])
    return [(label, helper.make_tensor_value_info("prediction", proto.STRING, [onnx_export.BATCH])),
            (probabilities, helper.make_tensor_value_info("probabilities", proto.FLOAT,
                                                          [onnx_export.BATCH, len(classes)]))]


def export_run(model, preprocessor, path):
    """Write the run's model with its preprocessing and predictions as one ONNX file (atomically)."""
    from backprop.saving.tensor_file import atomic_write
    metadata = {"task": preprocessor.task, "target": preprocessor.target,
                "feature_columns": json.dumps([c["name"] for c in preprocessor.columns if c["kind"] == "numeric"]),
                "categorical_columns": json.dumps([c["name"] for c in preprocessor.columns
                                                   if c["kind"] == "categorical"])}
    if preprocessor.task == "classification":
        metadata["classes"] = json.dumps([str(c) for c in preprocessor.classes])
    with onnx_export.on_the_host(model):
        core, examples = onnx_export.model_proto(model)
        onnx_export.verify(core, model, examples)
        proto, _ = onnx_export.model_proto(model, metadata, prologue=lambda e: _inputs(e, preprocessor),
                                           extend=lambda e, results, dtypes: _outputs(e, preprocessor, results[0]))
    atomic_write(path, [proto.SerializeToString()])
    return path
