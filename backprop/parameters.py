"""Flat parameter storage: variables become views of one buffer per dtype, their gradients views of another.

A training step is then a handful of array calls over one buffer however many variables a model
has, and that buffer is what an allreduce, a device transfer or a compiled replay works on. Each
variable is an entry keyed by its name (the weight's path, as model files name it), so optimizer
state follows names, never positions.
"""
import operator

from backprop import devices
from backprop.devices import array_module
from backprop.tensor import Tensor
from backprop.xp import np

_data = operator.attrgetter("data")


class FlatParameters:
    """Named variables packed into one value buffer and one gradient buffer per dtype.

    ``groups`` maps each dtype to ``(values, grads)``, two flat arrays; ``entries`` lists, in
    order, ``(name, variable, dtype, start, stop)``. The variables' arrays are rebound to views of
    ``values``, so updating the buffer updates every variable (and ``Variable.assign`` writes
    through to the buffer).
    """

    def __init__(self, named_variables):
        named_variables = list(named_variables)
        self.names = unique_names([name for name, _ in named_variables])
        self.variables = [variable for _, variable in named_variables]
        sizes = {}
        self.entries = []
        for name, variable in zip(self.names, self.variables):
            start = sizes.get(variable.dtype, 0)
            sizes[variable.dtype] = start + variable.size
            self.entries.append((name, variable, variable.dtype, start, start + variable.size))
        xp = array_module(self.variables[0].data) if self.variables else np  # the variables' device
        self.groups = {dtype: (xp.empty(size, dtype=dtype), xp.zeros(size, dtype=dtype))
                       for dtype, size in sizes.items()}
        self._ids = {id(v) for v in self.variables}
        self._views = [self.view(self.groups[entry[2]][0], position) for position, entry in enumerate(self.entries)]
        self._grad_views = [self.view(self.groups[entry[2]][1], position) for position, entry in enumerate(self.entries)]
        self.attach()

    def view(self, flat, position):
        """The part of ``flat`` (a buffer laid out like this entry's dtype group) that entry ``position`` owns."""
        _, variable, _, start, stop = self.entries[position]
        return flat[start:stop].reshape(variable.shape)

    def attach(self):
        """Make every variable a view of the buffer again: copy in any array that was rebound since."""
        if all(map(operator.is_, map(_data, self.variables), self._views)):  # every step: C-level calls only
            return
        for variable, view in zip(self.variables, self._views):
            if variable.data is not view:
                view[...] = variable.data
                variable.data = view

    def holds(self, variables):
        """Whether ``variables`` are this buffer's variables in its order (compared by identity: a Tensor's ==
        is elementwise)."""
        return len(variables) == len(self.variables) and all(map(operator.is_, variables, self.variables))

    def covers(self, variables):
        """Whether ``variables`` are exactly this buffer's variables, in any order."""
        return self.holds(variables) or (len(variables) == len(self.variables)
                                         and {id(v) for v in variables} == self._ids)

    def order_of(self, variables):
        """For each of this buffer's variables, its position in ``variables`` (the same variables, reordered)."""
        position_of = {id(v): position for position, v in enumerate(variables)}
        return [position_of[id(v)] for v in self.variables]

    def load_gradients(self, grads):
        """Copy gradients, in this buffer's order, into the gradient buffer (``None`` means zero). Returns the
        positions whose gradient was ``None``."""
        missing = []
        for position, (view, grad) in enumerate(zip(self._grad_views, grads)):
            if grad is None:
                view[...] = 0
                missing.append(position)
            else:
                grad = grad.data if isinstance(grad, Tensor) else grad
                if grad is view:  # already there (a data-parallel step's overlapped allreduce put it there)
                    continue
                if type(grad) is not type(view):  # gradients given as data from elsewhere join the buffer's device
                    grad = devices.of(view).to_device(grad)
                np.copyto(view, grad, casting="same_kind")
        return missing

    def gradient_views(self):
        return list(self._grad_views)


def unique_names(names):
    """Names made unique in order: a repeated 'w' becomes 'w#1', 'w#2' (deterministic for the same list)."""
    taken, result = set(), []
    for name in names:
        candidate, count = name, 0
        while candidate in taken:
            count += 1
            candidate = f"{name}#{count}"
        taken.add(candidate)
        result.append(candidate)
    return result
