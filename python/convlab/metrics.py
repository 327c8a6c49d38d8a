"""Metrics, Keras' way: objects that accumulate over batches and report one number.

    metric.update_state(y_true, y_pred)   add one batch
    metric.result()                       the value over every batch since the last reset
    metric.reset_state()                  start again (fit does it at each epoch)

Accuracies count matches, so the epoch value is exact (total correct / total seen), not
an average of batch averages. "accuracy" in compile() becomes the binary, categorical or
sparse categorical accuracy according to the loss, as Keras chooses it.

Metrics work on numpy arrays on the host: fit moves each batch's predictions there once.
"""

import numpy as np

from . import utils

__all__ = [
    "Metric", "Mean", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy",
    "MeanIoU", "get", "serialize", "deserialize",
]


def _numpy(value):
    if hasattr(value, "numpy"):
        return value.numpy()
    if hasattr(value, "get"):  # a CuPy array
        return value.get()
    return np.asarray(value)


class Metric:
    """Base of every metric: a name, update_state, result, reset_state, get_config."""

    name = "metric"

    def __init__(self, name=None):
        if name is not None:
            self.name = name
        self.reset_state()

    def reset_state(self):
        self.total, self.count = 0.0, 0

    def update_state(self, y_true, y_pred):
        raise NotImplementedError

    def result(self):
        return float(self.total / self.count) if self.count else 0.0

    def __call__(self, y_true, y_pred):
        """The metric of this one batch (state is not touched), as a float."""
        fresh = type(self).from_config(self.get_config())
        fresh.update_state(y_true, y_pred)
        return fresh.result()

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class Mean(Metric):
    """The (weighted) mean of the values given; fit uses it for the loss."""

    name = "mean"

    def update_state(self, values, sample_weight=None):
        values = _numpy(values).astype(np.float64)
        if sample_weight is None:
            self.total += float(values.sum())
            self.count += values.size
        else:
            self.total += float((values * sample_weight).sum())
            self.count += float(np.sum(sample_weight))


def _matches_to_state(metric, matches):
    matches = np.asarray(matches)
    metric.total += float(matches.sum())
    metric.count += matches.size


class Accuracy(Metric):
    """How often y_pred equals y_true exactly."""

    name = "accuracy"

    def update_state(self, y_true, y_pred):
        y_true, y_pred = _numpy(y_true), _numpy(y_pred)
        _matches_to_state(self, y_true.reshape(y_pred.shape) == y_pred)


class BinaryAccuracy(Metric):
    """How often (y_pred > threshold) equals the 0/1 target."""

    name = "binary_accuracy"

    def __init__(self, name=None, threshold=0.5):
        self.threshold = float(threshold)
        super().__init__(name)

    def update_state(self, y_true, y_pred):
        y_true, y_pred = _numpy(y_true), _numpy(y_pred)
        _matches_to_state(self, y_true.reshape(y_pred.shape) == (y_pred > self.threshold))

    def get_config(self):
        return {"name": self.name, "threshold": self.threshold}


class CategoricalAccuracy(Metric):
    """How often argmax(y_pred) equals argmax(y_true) (one-hot targets)."""

    name = "categorical_accuracy"

    def update_state(self, y_true, y_pred):
        y_true, y_pred = _numpy(y_true), _numpy(y_pred)
        _matches_to_state(self, y_true.argmax(axis=-1) == y_pred.argmax(axis=-1))


class SparseCategoricalAccuracy(Metric):
    """How often argmax(y_pred) equals the integer label (per pixel for segmentation)."""

    name = "sparse_categorical_accuracy"

    def update_state(self, y_true, y_pred):
        y_true, y_pred = _numpy(y_true), _numpy(y_pred)
        predicted = y_pred.argmax(axis=-1)
        _matches_to_state(self, y_true.reshape(predicted.shape) == predicted)


class MeanIoU(Metric):
    """Mean intersection-over-union over classes, from a confusion matrix summed over batches.

    IoU_c = TP_c / (TP_c + FP_c + FN_c); the mean is over classes that occur in the targets
    or the predictions (a class absent from both has no IoU, as in Keras). y_pred holds
    class indices (sparse_y_pred=True, Keras' default) or per-class scores on the last axis
    (sparse_y_pred=False: argmax is taken, what a softmax segmentation output needs).
    ignore_class: a label whose pixels are left out.
    """

    name = "mean_io_u"

    def __init__(self, num_classes, name=None, ignore_class=None, sparse_y_true=True, sparse_y_pred=True):
        if int(num_classes) < 2 or int(num_classes) != num_classes:
            raise ValueError(f"MeanIoU: num_classes must be an integer >= 2, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.ignore_class = ignore_class
        self.sparse_y_true, self.sparse_y_pred = bool(sparse_y_true), bool(sparse_y_pred)
        super().__init__(name)

    def reset_state(self):
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update_state(self, y_true, y_pred):
        y_true, y_pred = _numpy(y_true), _numpy(y_pred)
        if not self.sparse_y_true:
            y_true = y_true.argmax(axis=-1)
        if not self.sparse_y_pred:
            y_pred = y_pred.argmax(axis=-1)
        y_true = y_true.reshape(-1).astype(np.int64)
        y_pred = y_pred.reshape(-1).astype(np.int64)
        if y_true.size != y_pred.size:
            raise ValueError(
                f"MeanIoU: y_true has {y_true.size} labels but y_pred has {y_pred.size}; for per-class "
                "scores on the last axis use sparse_y_pred=False"
            )
        if self.ignore_class is not None:
            keep = y_true != self.ignore_class
            y_true, y_pred = y_true[keep], y_pred[keep]
        for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
            if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ValueError(
                    f"MeanIoU: {name} labels must be in [0, {self.num_classes}), got "
                    f"[{labels.min()}, {labels.max()}]"
                )
        self.confusion += np.bincount(y_true * self.num_classes + y_pred,
                                      minlength=self.num_classes ** 2).reshape(self.num_classes, self.num_classes)

    def result(self):
        true_positive = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(axis=0) + self.confusion.sum(axis=1) - true_positive
        present = union > 0
        return float((true_positive[present] / union[present]).mean()) if present.any() else 0.0

    def get_config(self):
        return {"name": self.name, "num_classes": self.num_classes, "ignore_class": self.ignore_class,
                "sparse_y_true": self.sparse_y_true, "sparse_y_pred": self.sparse_y_pred}


_BY_NAME = {
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
}
_CLASSES = {cls.__name__: cls for cls in (Mean, Accuracy, BinaryAccuracy, CategoricalAccuracy,
                                          SparseCategoricalAccuracy, MeanIoU)}

_ACCURACY_FOR_LOSS = {
    "binary_crossentropy": BinaryAccuracy,
    "categorical_crossentropy": CategoricalAccuracy,
    "sparse_categorical_crossentropy": SparseCategoricalAccuracy,
}


def get(identifier, loss=None, output_shape=None):
    """A Metric from a name or a Metric. "accuracy"/"acc" is resolved from the loss (Keras'
    rule): binary/categorical/sparse categorical accuracy for the matching crossentropy;
    otherwise binary accuracy for a one-unit output and exact-match accuracy else."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in ("accuracy", "acc"):
            loss_name = getattr(loss, "name", None)
            cls = _ACCURACY_FOR_LOSS.get(loss_name)
            if cls is None:
                one_unit = output_shape is not None and output_shape[-1] == 1
                cls = BinaryAccuracy if one_unit else Accuracy
            return cls(name=identifier)
        if key in _BY_NAME:
            return _BY_NAME[key]()
        raise ValueError(
            f"unknown metric {identifier!r}; known names: accuracy, acc, {', '.join(sorted(_BY_NAME))} "
            "(MeanIoU needs num_classes: pass metrics.MeanIoU(num_classes=...))"
        )
    raise TypeError(f"a metric must be a name or a Metric, got {type(identifier).__name__}")


serialize = utils.serialize_object


def deserialize(entry):
    return utils.deserialize_object(entry, _CLASSES, "metric")
