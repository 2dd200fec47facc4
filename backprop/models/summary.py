"""The table printed by model.summary()."""


def _rows(model):
    layers = model.layers
    return [(f"{layer.name} ({type(layer).__name__})", str(layer.output_shape) if layer.output_shape else "?",
             f"{layer.count_params():,}") for layer in layers]


def summary_text(model):
    if not model.built and not model.variables:
        raise ValueError(f"model '{model.name}' has not been built yet: call it on data, give the first layer "
                         "input_shape=..., start with bp.layers.Input(shape=...), or call model.build(shape)")
    header = ("Layer (type)", "Output Shape", "Param #")
    rows = _rows(model)
    widths = [max(len(r[i]) for r in rows + [header]) + 2 for i in range(3)]
    rule = "=" * sum(widths)
    line = lambda r: "".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()  # noqa: E731
    trainable = sum(v.size for v in model.trainable_variables)
    total = model.count_params()
    lines = [f'Model: "{model.name}"', rule, line(header), rule]
    lines += [line(r) for r in rows]
    lines += [rule, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}", rule]
    return "\n".join(lines)
