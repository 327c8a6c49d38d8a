"""Callbacks, Keras' way: objects fit() calls at the start and end of training, of each
epoch and of each batch, with the logs so far ({"loss": ..., "accuracy": ..., "val_loss": ...}).

    Callback            the base class; override any on_* hook, read self.model / self.params
    History             records each epoch's logs (fit returns it)
    ModelCheckpoint     saves the model (or only the best one by a monitored value)
    EarlyStopping       stops when the monitored value stops improving; can restore the best weights
    LearningRateScheduler  sets the optimizer's learning rate from schedule(epoch, lr) each epoch
    ReduceLROnPlateau   multiplies the learning rate by `factor` when the monitored value stalls
    TerminateOnNaN      stops training at the first batch whose loss is NaN or infinite
    LambdaCallback      hooks given as functions

A callback sets `self.model.stop_training = True` to end fit(): set in a batch hook, the
epoch ends after that batch (its logs are still recorded); set in on_epoch_end, after that epoch.
"""

import math
import os
import warnings

import numpy as np

__all__ = [
    "Callback", "CallbackList", "History", "ModelCheckpoint", "EarlyStopping", "LearningRateScheduler",
    "ReduceLROnPlateau", "TerminateOnNaN", "LambdaCallback",
]


class Callback:
    """Base class: every hook does nothing; fit() calls them in this order:
    on_train_begin, then per epoch on_epoch_begin, (on_train_batch_begin, on_train_batch_end)
    per batch, validation (on_test_begin/... /on_test_end), on_epoch_end; on_train_end."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_train_batch_begin(self, batch, logs=None): pass
    def on_train_batch_end(self, batch, logs=None): pass
    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass
    def on_test_batch_begin(self, batch, logs=None): pass
    def on_test_batch_end(self, batch, logs=None): pass
    def on_predict_begin(self, logs=None): pass
    def on_predict_end(self, logs=None): pass
    def on_predict_batch_begin(self, batch, logs=None): pass
    def on_predict_batch_end(self, batch, logs=None): pass


class CallbackList:
    """Calls a hook on every callback in order."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks or [])
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(f"callbacks must be Callback objects, got {type(callback).__name__}")
            callback.set_model(model)
            callback.set_params(params)

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args, **kwargs):
            for callback in self.callbacks:
                getattr(callback, hook)(*args, **kwargs)

        return call


class History(Callback):
    """history.history[name] is the list of that value over epochs; history.epoch the epoch numbers."""

    def __init__(self):
        super().__init__()
        self.history, self.epoch = {}, []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(value)


def _monitor_op(owner, mode, monitor):
    """np.less for values to minimize, np.greater for values to maximize (mode="auto": by name)."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "min":
        return np.less
    if mode == "max":
        return np.greater
    name = monitor.lower()
    maximize = any(word in name for word in ("acc", "auc", "iou", "precision", "recall")) and "loss" not in name
    return np.greater if maximize else np.less


def _monitored(owner, logs, monitor):
    value = (logs or {}).get(monitor)
    if value is None:
        available = ", ".join(sorted(logs or {})) or "none"
        warnings.warn(f"{owner}: the monitored value {monitor!r} is not in the logs (available: {available})",
                      RuntimeWarning, stacklevel=3)
    return value


class ModelCheckpoint(Callback):
    """Save the model at the end of each epoch, or only when the monitored value improves.

    filepath may hold format fields filled from the epoch (1-based) and the logs:
    "model_{epoch:02d}_{val_loss:.3f}.keras". save_weights_only=True writes weights only.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__()
        if save_freq != "epoch":
            raise ValueError(f"ModelCheckpoint: only save_freq='epoch' is supported, got {save_freq!r}")
        self.filepath, self.monitor, self.verbose = os.fspath(filepath), monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.monitor_op = _monitor_op("ModelCheckpoint", mode, monitor)
        self.best = initial_value_threshold if initial_value_threshold is not None else (
            math.inf if self.monitor_op is np.less else -math.inf)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = _monitored("ModelCheckpoint", logs, self.monitor)
            if current is None or not self.monitor_op(current, self.best):
                if self.verbose and current is not None:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                      f"saving model to {path}")
            self.best = current
        elif self.verbose:
            print(f"\nEpoch {epoch + 1}: saving model to {path}")
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class EarlyStopping(Callback):
    """Stop training when `monitor` has not improved by more than min_delta for `patience`
    epochs. restore_best_weights=True puts back the weights of the best epoch at the end
    (when training stopped early, or at the end of training if the best epoch was earlier)."""

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        if patience < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0, got {patience!r}")
        self.monitor, self.patience, self.verbose = monitor, int(patience), verbose
        self.baseline, self.restore_best_weights = baseline, restore_best_weights
        self.start_from_epoch = int(start_from_epoch)
        self.monitor_op = _monitor_op("EarlyStopping", mode, monitor)
        self.min_delta = abs(min_delta) if self.monitor_op is np.greater else -abs(min_delta)

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best = math.inf if self.monitor_op is np.less else -math.inf
        self.best_weights = None

    def _improved(self, current, reference):
        return reference is None or self.monitor_op(current - self.min_delta, reference)

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored("EarlyStopping", logs, self.monitor)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._improved(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class LearningRateScheduler(Callback):
    """At the start of each epoch set the learning rate to schedule(epoch, current_lr)."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        rate = float(self.schedule(epoch, optimizer.learning_rate))
        optimizer.learning_rate = rate
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {rate}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` (not below min_lr) after `patience` epochs
    without improvement of `monitor`, then wait `cooldown` epochs before watching again."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__()
        if not 0 < factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor!r}")
        self.monitor, self.factor, self.patience, self.verbose = monitor, float(factor), int(patience), verbose
        self.cooldown, self.min_lr, self.min_delta = int(cooldown), float(min_lr), float(min_delta)
        self.monitor_op = _monitor_op("ReduceLROnPlateau", mode, monitor)

    def on_train_begin(self, logs=None):
        self.wait, self.cooldown_counter = 0, 0
        self.best = math.inf if self.monitor_op is np.less else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored("ReduceLROnPlateau", logs, self.monitor)
        if current is None:
            return
        delta = -self.min_delta if self.monitor_op is np.less else self.min_delta
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.monitor_op(current, self.best + delta):
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                optimizer = self.model.optimizer
                old = optimizer.learning_rate
                if old > self.min_lr:
                    optimizer.learning_rate = max(old * self.factor, self.min_lr)
                    if self.verbose:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to "
                              f"{optimizer.learning_rate}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class TerminateOnNaN(Callback):
    """Stop training at the end of the first batch whose loss is NaN or infinite (Keras' callback):
    the epoch ends there, its logs show the loss as nan, and fit returns."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class LambdaCallback(Callback):
    """Hooks as functions: LambdaCallback(on_epoch_end=lambda epoch, logs: ...)."""

    _HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
              "on_train_batch_end")

    def __init__(self, **hooks):
        super().__init__()
        for name, function in hooks.items():
            if name not in self._HOOKS:
                raise ValueError(f"LambdaCallback: unknown hook {name!r}; known: {', '.join(self._HOOKS)}")
            setattr(self, name, function)
