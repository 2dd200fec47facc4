"""ONNX for a CLI run: the run's preprocessing before the model and its predictions after it, so the file
takes the raw feature values ``backprop predict`` takes and gives what it prints.

Inputs: ``features`` (float32, batch x numeric columns, in the table's order) and one string input of
shape (batch,) per categorical column, named after the column. Numeric columns are standardised with the
training statistics (missing values, sent as NaN, are filled with the training mean when the run used
``--missing mean``); categories become one-hot rows (an unseen category gives zeros). Outputs:
``prediction`` (a value per row, or the class name) and, for classification, ``probabilities``.
"""
import json

from backprop.export import onnx as onnx_export
from backprop.xp import np


def _inputs(e, preprocessor):
    """(graph inputs, the name of the model's input) built from the raw columns."""
    helper, proto = e.helper, e.onnx.TensorProto
    numeric = [c for c in preprocessor.columns if c["kind"] == "numeric"]
    graph_inputs, blocks = [], []
    if numeric:
        e.names.add("features")
        graph_inputs.append(helper.make_tensor_value_info("features", proto.FLOAT, [onnx_export.BATCH, len(numeric)]))
        values = "features"
        if preprocessor.missing == "mean":
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
        cells = e.node("Unsqueeze", [name, e.constant(np.array([1], np.int64), stem="axes")])
        categories = e.constant(np.array(column["categories"], dtype=object), stem="categories")
        blocks.append(e.node("Cast", [e.node("Equal", [cells, categories])], to=proto.FLOAT))
    joined = e.node("Concat", blocks, axis=1) if len(blocks) > 1 else blocks[0]
    return graph_inputs, joined


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
