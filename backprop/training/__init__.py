"""Training: the step, the loop that runs it (batching, logs, callbacks, backups), evaluation and prediction.

Models delegate ``fit``, ``evaluate``, ``predict``, ``train_on_batch`` and ``test_on_batch`` here,
so the loop has one home that devices, distribution and compiled steps can wrap.
"""
from backprop.training.step import StepResult, TrainStep, test_step
from backprop.training.trainer import Trainer, evaluate_logs, predict

__all__ = ["StepResult", "TrainStep", "Trainer", "evaluate_logs", "predict", "test_step"]
