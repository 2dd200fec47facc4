"""Tools for choosing a learning rate and reading a failed run.

- ``find_learning_rate(model, x, y)``: the learning-rate range test (Smith 2017, "Cyclical Learning
  Rates for Training Neural Networks"; fastai's ``lr_find``). One short run raises the rate
  geometrically every batch and records the (smoothed) loss; the suggestion is the rate where the loss
  falls fastest. The model's weights and optimizer state are put back afterwards.
- ``learning_rate_sweep(build, x, y, rates)``: short fits at several rates, each labelled with the
  lecture's three regimes: "stuck" (the loss barely moves), "converging", "diverged".
- ``diagnose_divergence(losses, learning_rate)``: the cause and the next step for a run whose loss
  became NaN or grew by orders of magnitude, in words.
"""
import math
import warnings
from dataclasses import dataclass, field

from backprop import random
from backprop.training import data
from backprop.xp import np


@dataclass
class LearningRateCurve:
    """The range test's rates, raw and smoothed losses, and its suggestion."""
    learning_rates: list
    losses: list
    smoothed: list
    suggestion: float
    stopped_early: bool = False

    def plot(self):
        from backprop.plot import figure as figures
        fig, axes = figures.new(width=6, height=4)
        ax = axes[0, 0]
        ax.plot(self.learning_rates, self.losses, color="0.75", linewidth=1, label="loss per batch")
        ax.plot(self.learning_rates, self.smoothed, color="C0", label="smoothed")
        ax.axvline(self.suggestion, color="C3", linestyle="--", label=f"suggested {self.suggestion:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        finite = [v for v in self.losses if math.isfinite(v)]
        start = self.smoothed[0]
        ax.set_ylim(min(finite) - 0.05 * abs(start), start + 0.5 * (start - min(finite)) + 1e-3)
        ax.legend()
        ax.set_title("Learning-rate range test")
        return fig


def find_learning_rate(model, x, y, start=1e-7, stop=10.0, steps=100, batch_size=32, smoothing=0.98,
                       divergence=4.0):
    """The range test on a compiled model; see the module docstring. Stops early once a running average of
    the loss exceeds ``divergence`` times its best; the curve reported is a centred average (no lag).
    Returns a LearningRateCurve; the model, its optimizer and the random state are left as they were."""
    model.check_compiled("find_learning_rate")
    if not 0 < start < stop or steps < 5:
        raise ValueError(f"find_learning_rate: needs 0 < start < stop and at least 5 steps, got start={start!r}, "
                         f"stop={stop!r}, steps={steps!r}")
    x, y, _ = data.prepare(model, x, y)
    batch_size = data.check_batch_size(batch_size, len(x))
    if not model.built:
        model.predict(x[:1])
    saved_weights, saved_state = model.get_weights(), model.optimizer.get_state()
    saved_rate, saved_random = model.optimizer._learning_rate, random.get_state()
    rates, losses, average, best = [], [], 0.0, math.inf
    factor = (stop / start) ** (1 / (steps - 1))
    stopped_early = False
    try:
        batches = _endless_batches(len(x), batch_size)
        for step in range(steps):
            rate = start * factor ** step
            model.optimizer.learning_rate = rate
            index = next(batches)
            with np.errstate(all="ignore"):
                loss = model.train_on_batch(x[index], y[index])
            average = smoothing * average + (1 - smoothing) * loss
            value = average / (1 - smoothing ** (step + 1))  # bias-corrected, as fastai does
            rates.append(rate)
            losses.append(loss)
            if not math.isfinite(value) or value > divergence * best:
                stopped_early = True
                break
            best = min(best, value)
    finally:
        model.set_weights(saved_weights)
        model.optimizer.set_state(saved_state, model.parameters)
        model.optimizer._learning_rate = saved_rate
        random.set_state(saved_random)
    smoothed = _centred_average(losses)  # no lag, unlike the running average that decides when to stop
    return LearningRateCurve(rates, losses, smoothed, _steepest_descent(rates, smoothed), stopped_early)


def _centred_average(values, window=9):
    """Each value averaged with its neighbours (fewer at the ends); non-finite values stay out."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    kernel = np.ones(window)
    sums = np.convolve(np.where(finite, values, 0.0), kernel, mode="same")
    counts = np.convolve(finite.astype(np.float64), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return [float(v) for v in np.where(counts > 0, sums / counts, np.nan)]


def _endless_batches(n, batch_size):
    while True:
        order = random.generator().permutation(n)
        for start in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            yield order[start:start + batch_size]


def _steepest_descent(rates, smoothed):
    """The rate where the smoothed loss falls fastest against log(rate), before its minimum."""
    finite = [i for i, v in enumerate(smoothed) if math.isfinite(v)]
    if len(finite) < 3:
        return rates[0]
    end = min(finite, key=lambda i: smoothed[i])
    candidates = [i for i in finite if i <= end]
    if len(candidates) < 3:
        return rates[end] / 10
    logs = np.log10([rates[i] for i in candidates])
    slopes = np.gradient(np.array([smoothed[i] for i in candidates]), logs)
    return float(rates[candidates[int(np.argmin(slopes))]])


@dataclass
class SweepResult:
    """One rate of a sweep: the per-epoch losses and the regime they show."""
    learning_rate: float
    losses: list = field(default_factory=list)
    regime: str = ""
    initial: float = None  # the loss before training


def regime(losses, initial, stuck_below=0.05, diverged_above=1.5):
    """The lecture's three regimes for a run's per-epoch losses, against the loss before training:
    "diverged" (non-finite, or ending above ``diverged_above`` times the initial loss), "stuck" (never
    better than the initial loss by ``stuck_below`` of it), else "converging"."""
    if not losses or not all(math.isfinite(v) for v in losses) or losses[-1] > diverged_above * initial:
        return "diverged"
    if initial - min(losses) < stuck_below * abs(initial):
        return "stuck"
    return "converging"


def learning_rate_sweep(build, x, y, rates=(1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0), epochs=10, batch_size=32):
    """``build(learning_rate)`` returns a compiled model; each is fit for ``epochs`` from the same seed.
    Returns a SweepResult per rate, labelled with its regime."""
    results = []
    for rate in rates:
        random.set_seed(0)
        model = build(rate)
        initial = model.evaluate(x, y, batch_size=batch_size, verbose=0)
        initial = initial[0] if isinstance(initial, list) else initial
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="fit: the loss")  # the sweep labels divergence itself
            history = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, allow_nonfinite=True)
        losses = history.history.get("loss", [])
        results.append(SweepResult(rate, losses, regime(losses, initial), initial))
    return results


def diagnose_divergence(losses, learning_rate, suggestion=None, initial=None):
    """A sentence naming why a run's loss blew up and what to try next, or None when it did not: NaN or
    infinity, growth by three orders of magnitude within the run, or (given the loss before training,
    ``initial``) ending above 1.5 times it."""
    if not losses:
        return None
    finite = [v for v in losses if math.isfinite(v)]
    if len(finite) < len(losses):
        growth = "became NaN or infinite"
    elif len(finite) >= 2 and min(finite) > 0 and finite[-1] >= 1e3 * min(finite):
        growth = f"grew {finite[-1] / min(finite):.3g}×"
    elif initial is not None and finite[-1] > 1.5 * initial:
        growth = f"ended {finite[-1] / initial:.3g}× above where it started ({initial:.3g})"
    else:
        return None
    span = (f" after {len(finite)} finite epoch{'s' if len(finite) != 1 else ''}" if len(finite) < len(losses)
            else f" over {len(losses)} epoch{'s' if len(losses) != 1 else ''}")
    advice = (f"try {suggestion:.2g}, the learning-rate finder's suggestion" if suggestion else
              f"try {learning_rate / 10:g}, or the rate the learning-rate finder suggests (bp.tools.find_learning_rate, "
              "`backprop lr-find`)")
    return (f"the loss {growth}{span} at learning rate {learning_rate:g}: the steps are too large for this loss "
            f"surface, so each one overshoots the minimum; {advice}")
