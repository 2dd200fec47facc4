"""One training step and one evaluation step, the units every training loop is made of.

A step reads the batch and the training state (the model's FlatParameters, the optimizer's
slots keyed by name, its iteration count) and writes the new state in place; what it returns
stays arrays, so nothing waits for the device. Wrappers work on the state's flat buffers:
``reduce_gradients(params, loss) -> loss`` runs between the gradients and the update (an allreduce
across workers),
and a compiled step can replay the same array calls.
"""
from backprop.training import data
from backprop.tape import GradientTape, no_grad
from backprop.xp import np


class StepResult:
    """What a step returns: the batch's loss and predictions (arrays) and whether the update was applied.
    ``rows`` is the slice of the batch the predictions are for (a data-parallel rank's shard), None for all."""

    __slots__ = ("loss", "y_pred", "applied", "rows")

    def __init__(self, loss, y_pred, applied, rows=None):
        self.loss, self.y_pred, self.applied, self.rows = loss, y_pred, applied, rows


class TrainStep:
    """Forward pass and loss on a tape, gradients into the model's gradient buffer, optimizer update.

    With ``guard_nonfinite`` a batch whose loss is NaN or infinite is not applied (that check reads
    the loss, so it waits for the device: only TerminateOnNaN asks for it).
    """

    def __init__(self, model, guard_nonfinite=False, reduce_gradients=None):
        self.model, self.guard_nonfinite, self.reduce_gradients = model, guard_nonfinite, reduce_gradients

    def __call__(self, x, y, sample_weight=None):
        model = self.model
        x, sample_weight = data.to_model_device(model, x, sample_weight)  # labels: the loss moves them
        with GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = model.compute_loss(y, y_pred, sample_weight)
        params = model.parameters  # after the call: layers built lazily on it exist now
        return self.update(tape.gradient(loss, params.variables), loss.data, y_pred.data)

    def update(self, grads, loss, y_pred, state=None):
        """Gradients (in the order of the parameters) into the gradient buffer, reduced, then applied. ``state`` is
        the (parameters, optimizer) pair a replay kept from its trace; without it they are read from the model."""
        params, optimizer = state or (self.model.parameters, self.model.optimizer)
        optimizer.load_gradients(params, grads)
        if self.reduce_gradients is not None:  # e.g. an allreduce across ranks; it returns the reduced loss
            loss = self.reduce_gradients(params, loss)
        if self.guard_nonfinite and not np.isfinite(loss):
            return StepResult(loss, y_pred, False)
        optimizer.apply_to(params)
        return StepResult(loss, y_pred, True)


def test_step(model, x, y, sample_weight=None):
    """(loss, predictions) of one batch in inference mode, nothing recorded."""
    x, sample_weight = data.to_model_device(model, x, sample_weight)
    with no_grad():
        y_pred = model(x, training=False)
        return model.compute_loss(y, y_pred, sample_weight).data, y_pred.data
