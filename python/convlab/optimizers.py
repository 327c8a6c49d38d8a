"""Optimizers with Keras' defaults and update rules, and learning-rate schedules.

    SGD(learning_rate=0.01, momentum=0.0, nesterov=False)
        v = momentum * v - lr * g
        w = w + v                              (nesterov: w = w + momentum * v - lr * g)
    RMSprop(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False)
        s = rho * s + (1 - rho) * g^2          (centered: a = rho * a + (1 - rho) * g,
        step = lr * g / sqrt(s + epsilon)                 s - a^2 replaces s)
        w = w - step                           (momentum: m = momentum * m + step; w -= m)
    Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False)
        m = m + (1 - beta_1) * (g - m);  v = v + (1 - beta_2) * (g^2 - v)
        w = w - lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)
    Nadam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7)   (Géron's "nadam")
        Adam with Nesterov momentum, as Keras computes it: mu_t = beta_1 * (1 - 0.5 * 0.96^t),
        P_t = mu_1 * ... * mu_t;  m and v as Adam's;
        m_hat = mu_{t+1} * m / (1 - P_t * mu_{t+1}) + (1 - mu_t) * g / (1 - P_t)
        w = w - lr * m_hat / (sqrt(v / (1 - beta_2^t)) + epsilon)

`learning_rate` may be a number or a schedule, a function of the step count (the number
of updates applied so far, as in Keras, so a schedule's decay_steps are batches).
Keras 1/2's names still work, with a warning that says what to write instead (DLwP 1e's
`RMSprop(lr=1e-4)`): `lr=` is `learning_rate=`, and `decay=d` is Keras 2's time decay
lr / (1 + d * step), `learning_rate=InverseTimeDecay(lr, decay_steps=1, decay_rate=d)`.
Gradient clipping (clipnorm, clipvalue, global_clipnorm) works as in Keras.

Only the variables handed to `apply_gradients` change: a model's frozen layers
(trainable=False) have no trainable weights, so fit never passes them here.
State (the step count and one or two slot arrays per variable) is kept per variable
object, and `get_state`/`set_state` move it to and from plain arrays for saving.
"""

import functools
import inspect
import math
import warnings

import numpy as np

from . import utils
from .autograd import Tensor, Variable, array_module, _to_device

__all__ = [
    "Optimizer", "SGD", "RMSprop", "Adam", "Nadam", "get", "serialize", "deserialize",
    "LearningRateSchedule", "ExponentialDecay", "StepDecay", "PiecewiseConstantDecay", "InverseTimeDecay",
    "CosineDecay",
]


# --------------------------------------------------------------------------- schedules


class LearningRateSchedule:
    """A learning rate as a function of the step (the number of updates applied so far)."""

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _positive(owner, name, value):
    if not value > 0:
        raise ValueError(f"{owner}: {name} must be > 0, got {value!r}")
    return value


class ExponentialDecay(LearningRateSchedule):
    """lr = initial * decay_rate ** (step / decay_steps); staircase=True floors the exponent
    (a step decay: multiply by decay_rate every decay_steps updates)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        self.initial_learning_rate = float(_positive("ExponentialDecay", "initial_learning_rate", initial_learning_rate))
        self.decay_steps = _positive("ExponentialDecay", "decay_steps", decay_steps)
        self.decay_rate = float(_positive("ExponentialDecay", "decay_rate", decay_rate))
        self.staircase = bool(staircase)

    def __call__(self, step):
        exponent = step / self.decay_steps
        if self.staircase:
            exponent = math.floor(exponent)
        return self.initial_learning_rate * self.decay_rate ** exponent

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase}


class StepDecay(LearningRateSchedule):
    """Step decay: lr = initial * factor ** floor(step / step_size) (drop by `factor` every
    step_size updates); the same as ExponentialDecay(..., staircase=True)."""

    def __init__(self, initial_learning_rate, step_size, factor=0.1):
        self.initial_learning_rate = float(_positive("StepDecay", "initial_learning_rate", initial_learning_rate))
        self.step_size = int(_positive("StepDecay", "step_size", step_size))
        self.factor = float(_positive("StepDecay", "factor", factor))

    def __call__(self, step):
        return self.initial_learning_rate * self.factor ** (step // self.step_size)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "step_size": self.step_size,
                "factor": self.factor}


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] while step <= boundaries[0], values[1] while step <= boundaries[1], ...,
    values[-1] after the last boundary (Keras' rule)."""

    def __init__(self, boundaries, values):
        boundaries, values = list(boundaries), [float(v) for v in values]
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"PiecewiseConstantDecay: values must have one more element than boundaries, got "
                f"{len(boundaries)} boundaries and {len(values)} values"
            )
        if any(b >= a for a, b in zip(boundaries[1:], boundaries)):
            raise ValueError(f"PiecewiseConstantDecay: boundaries must increase, got {boundaries}")
        self.boundaries, self.values = boundaries, values

    def __call__(self, step):
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values}


class InverseTimeDecay(LearningRateSchedule):
    """lr = initial / (1 + decay_rate * step / decay_steps) (floored with staircase=True)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        self.initial_learning_rate = float(_positive("InverseTimeDecay", "initial_learning_rate", initial_learning_rate))
        self.decay_steps = _positive("InverseTimeDecay", "decay_steps", decay_steps)
        self.decay_rate = float(decay_rate)
        self.staircase = bool(staircase)

    def __call__(self, step):
        ratio = step / self.decay_steps
        if self.staircase:
            ratio = math.floor(ratio)
        return self.initial_learning_rate / (1 + self.decay_rate * ratio)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase}


class CosineDecay(LearningRateSchedule):
    """lr = initial * ((1 - alpha) * 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps)) + alpha)."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0):
        self.initial_learning_rate = float(_positive("CosineDecay", "initial_learning_rate", initial_learning_rate))
        self.decay_steps = _positive("CosineDecay", "decay_steps", decay_steps)
        self.alpha = float(alpha)

    def __call__(self, step):
        progress = min(step, self.decay_steps) / self.decay_steps
        return self.initial_learning_rate * ((1 - self.alpha) * 0.5 * (1 + math.cos(math.pi * progress)) + self.alpha)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha}


_SCHEDULES = {cls.__name__: cls for cls in (ExponentialDecay, StepDecay, PiecewiseConstantDecay,
                                            InverseTimeDecay, CosineDecay)}


# --------------------------------------------------------------------------- optimizers


def _accept_keras_one_names(init):
    """Wrap an optimizer's __init__ so that Keras 1/2's lr= and decay= still work: each is
    turned into today's argument, with a warning that names what to write instead."""

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        name = type(self).__name__
        if "lr" in kwargs:
            lr = kwargs.pop("lr")
            if args or "learning_rate" in kwargs:
                given = args[0] if args else kwargs["learning_rate"]
                raise TypeError(f"{name}: got lr={lr!r} and learning_rate={given!r}; lr is the old name of "
                                f"learning_rate, expected only learning_rate")
            warnings.warn(f"{name}: lr is deprecated, write learning_rate={lr!r} instead", UserWarning,
                          stacklevel=2)
            kwargs["learning_rate"] = lr
        if "decay" in kwargs:
            decay = kwargs.pop("decay")
            if isinstance(decay, bool) or not isinstance(decay, (int, float, np.number)) or not decay >= 0:
                raise ValueError(f"{name}: decay must be a number >= 0 (Keras 2's time decay), got {decay!r}")
            if decay:
                default = inspect.signature(init).parameters["learning_rate"].default
                rate = args[0] if args else kwargs.get("learning_rate", default)
                if isinstance(rate, LearningRateSchedule) or callable(rate):
                    raise ValueError(f"{name}: decay={decay!r} needs a number as learning_rate, got a schedule; "
                                     f"expected one of the two")
                warnings.warn(f"{name}: decay is deprecated, write learning_rate=convlab.optimizers.InverseTimeDecay("
                              f"{rate!r}, decay_steps=1, decay_rate={decay!r}) instead", UserWarning, stacklevel=2)
                schedule = InverseTimeDecay(rate, decay_steps=1, decay_rate=float(decay))
                args, kwargs = args[1:], dict(kwargs, learning_rate=schedule)
        init(self, *args, **kwargs)

    return __init__


class Optimizer:
    """Base: learning rate (number or schedule), step count, clipping, per-variable slots.

    A subclass names its slots (`slot_names`) and writes `update(variable, gradient, slots, lr)`
    on arrays, in place.
    """

    slot_names = ()

    def __init_subclass__(cls, **kwargs):
        # Every optimizer's constructor takes Keras 1/2's lr= and decay= (see the module doc).
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _accept_keras_one_names(cls.__dict__["__init__"])

    def __init__(self, learning_rate, name=None, clipnorm=None, clipvalue=None, global_clipnorm=None):
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(f"{type(self).__name__}: give at most one of clipnorm, clipvalue, global_clipnorm")
        if not isinstance(learning_rate, LearningRateSchedule) and not callable(learning_rate):
            _positive(type(self).__name__, "learning_rate", learning_rate)
            learning_rate = float(learning_rate)
        self._learning_rate = learning_rate
        self.name = name or type(self).__name__.lower()
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.iterations = 0
        self._slots = {}  # id(variable) -> (variable, [slot arrays])

    # ---- learning rate

    @property
    def learning_rate(self):
        """The current learning rate (the schedule evaluated at the current step)."""
        rate = self._learning_rate
        if isinstance(rate, LearningRateSchedule):
            return float(rate(self.iterations))
        if callable(rate):
            return float(rate())
        return rate

    @learning_rate.setter
    def learning_rate(self, value):
        if not isinstance(value, LearningRateSchedule) and not callable(value):
            value = float(_positive(type(self).__name__, "learning_rate", value))
        self._learning_rate = value

    lr = learning_rate

    # ---- applying gradients

    def _slots_for(self, variable):
        entry = self._slots.get(id(variable))
        if entry is None or entry[0] is not variable:
            xp = array_module(variable.data)
            entry = (variable, [xp.zeros_like(variable.data) for _ in self.slot_names])
            self._slots[id(variable)] = entry
        slots = entry[1]
        if slots and array_module(slots[0]) is not array_module(variable.data):  # the model moved
            slots[:] = [_to_device(s, variable.device) for s in slots]
        return slots

    def _clip(self, gradients):
        if self.clipvalue is not None:
            return [array_module(g).clip(g, -self.clipvalue, self.clipvalue) for g in gradients]
        if self.clipnorm is not None:
            clipped = []
            for g in gradients:
                norm = float(array_module(g).sqrt((g * g).sum()))
                clipped.append(g * (self.clipnorm / norm) if norm > self.clipnorm else g)
            return clipped
        if self.global_clipnorm is not None:
            norm = math.sqrt(sum(float((g * g).sum()) for g in gradients))
            if norm > self.global_clipnorm:
                return [g * (self.global_clipnorm / norm) for g in gradients]
        return gradients

    def apply_gradients(self, grads_and_vars):
        """Apply one update: `grads_and_vars` is a list of (gradient, variable) pairs (Keras'
        order); a None gradient leaves its variable alone. Advances the step count."""
        pairs = [(g, v) for g, v in grads_and_vars if g is not None]
        for g, v in pairs:
            if not isinstance(v, Variable):
                raise TypeError(f"{type(self).__name__}.apply_gradients: expected Variables, got {type(v).__name__}")
        gradients = [g.data if isinstance(g, Tensor) else g for g, _ in pairs]
        for g, (_, v) in zip(gradients, pairs):
            if tuple(g.shape) != v.shape:
                raise ValueError(
                    f"{type(self).__name__}.apply_gradients: gradient of shape {tuple(g.shape)} for variable "
                    f"{v.name!r} of shape {v.shape}"
                )
        gradients = self._clip(gradients)
        lr = self.learning_rate
        self.iterations += 1
        for g, (_, v) in zip(gradients, pairs):
            self.update(v.data, g.astype(v.dtype, copy=False), self._slots_for(v), lr)

    def update(self, w, g, slots, lr):
        raise NotImplementedError

    # ---- state and config

    def get_state(self, variables):
        """{"iterations": n, "slots": [[arrays of variable 0], ...]} for these variables (zeros for
        a variable never updated), as numpy arrays in the order given."""
        slots = []
        for v in variables:
            entry = self._slots.get(id(v))
            arrays = entry[1] if entry is not None and entry[0] is v else [np.zeros(v.shape, v.dtype)
                                                                            for _ in self.slot_names]
            slots.append([_to_device(a, "cpu") for a in arrays])
        return {"iterations": self.iterations, "slots": slots}

    def set_state(self, variables, state):
        slots = state["slots"]
        if len(slots) != len(variables):
            raise ValueError(f"{type(self).__name__}.set_state: state for {len(slots)} variables, model has {len(variables)}")
        for v, arrays in zip(variables, slots):
            if len(arrays) != len(self.slot_names) or any(tuple(a.shape) != v.shape for a in arrays):
                raise ValueError(f"{type(self).__name__}.set_state: slot arrays do not match variable {v.name!r} {v.shape}")
            self._slots[id(v)] = (v, [_to_device(np.array(a, dtype=v.dtype), v.device) for a in arrays])
        self.iterations = int(state["iterations"])

    def get_config(self):
        rate = self._learning_rate
        if isinstance(rate, LearningRateSchedule):
            rate = utils.serialize_object(rate)
        elif callable(rate):
            raise ValueError(f"{type(self).__name__}: a learning rate given as a Python function cannot be saved")
        return {"name": self.name, "learning_rate": rate, "clipnorm": self.clipnorm, "clipvalue": self.clipvalue,
                "global_clipnorm": self.global_clipnorm}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        rate = config.get("learning_rate")
        if isinstance(rate, dict):
            config["learning_rate"] = utils.deserialize_object(rate, _SCHEDULES, "learning-rate schedule")
        return cls(**config)


class SGD(Optimizer):
    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if not 0 <= momentum <= 1:
            raise ValueError(f"SGD: momentum must be in [0, 1], got {momentum!r}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        self.slot_names = ("momentum",) if self.momentum else ()

    def update(self, w, g, slots, lr):
        if not self.momentum:
            w -= lr * g
            return
        (velocity,) = slots
        velocity *= self.momentum
        velocity -= lr * g
        if self.nesterov:
            w += self.momentum * velocity - lr * g
        else:
            w += velocity

    def get_config(self):
        return dict(super().get_config(), momentum=self.momentum, nesterov=self.nesterov)


class RMSprop(Optimizer):
    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if not 0 <= rho < 1:
            raise ValueError(f"RMSprop: rho must be in [0, 1), got {rho!r}")
        if not 0 <= momentum < 1:
            raise ValueError(f"RMSprop: momentum must be in [0, 1), got {momentum!r}")
        self.rho, self.momentum, self.epsilon, self.centered = float(rho), float(momentum), float(epsilon), bool(centered)
        self.slot_names = ("velocity",) + (("average_gradient",) if centered else ()) + (
            ("momentum",) if self.momentum else ())

    def update(self, w, g, slots, lr):
        xp = array_module(w)
        velocity = slots[0]
        velocity *= self.rho
        velocity += (1 - self.rho) * g * g
        denominator = velocity
        if self.centered:
            average = slots[1]
            average *= self.rho
            average += (1 - self.rho) * g
            denominator = velocity - average * average
        step = lr * g / xp.sqrt(denominator + self.epsilon)
        if self.momentum:
            moment = slots[-1]
            moment *= self.momentum
            moment += step
            step = moment
        w -= step

    def get_config(self):
        return dict(super().get_config(), rho=self.rho, momentum=self.momentum, epsilon=self.epsilon,
                    centered=self.centered)


class Adam(Optimizer):
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        for name, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0 <= value < 1:
                raise ValueError(f"Adam: {name} must be in [0, 1), got {value!r}")
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = float(beta_1), float(beta_2), float(epsilon), bool(amsgrad)
        self.slot_names = ("m", "v") + (("v_hat",) if amsgrad else ())

    def update(self, w, g, slots, lr):
        xp = array_module(w)
        m, v = slots[0], slots[1]
        t = self.iterations  # already advanced: the first update uses t = 1
        m += (1 - self.beta_1) * (g - m)
        v += (1 - self.beta_2) * (g * g - v)
        if self.amsgrad:
            xp.maximum(slots[2], v, out=slots[2])
            v = slots[2]
        alpha = lr * math.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)
        w -= alpha * m / (xp.sqrt(v) + self.epsilon)

    def get_config(self):
        return dict(super().get_config(), beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
                    amsgrad=self.amsgrad)


class Nadam(Optimizer):
    """Adam with Nesterov momentum (Dozat, 2016), with Keras' momentum schedule (module doc)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        for name, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0 <= value < 1:
                raise ValueError(f"Nadam: {name} must be in [0, 1), got {value!r}")
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self.slot_names = ("m", "v")
        self._momentum_product = (0, 1.0)  # (t, mu_1 * ... * mu_t), rebuilt from t after set_state

    def _momentum(self, t):
        return self.beta_1 * (1 - 0.5 * 0.96 ** t)

    def _product_through(self, t):
        done, product = self._momentum_product
        if done != t:
            if done == t - 1:
                product *= self._momentum(t)
            else:
                product = math.prod(self._momentum(i) for i in range(1, t + 1))
            self._momentum_product = (t, product)
        return product

    def update(self, w, g, slots, lr):
        xp = array_module(w)
        m, v = slots
        t = self.iterations  # already advanced: the first update uses t = 1
        mu, mu_next, product = self._momentum(t), self._momentum(t + 1), self._product_through(t)
        m += (1 - self.beta_1) * (g - m)
        v += (1 - self.beta_2) * (g * g - v)
        m_hat = (mu_next / (1 - product * mu_next)) * m + ((1 - mu) / (1 - product)) * g
        w -= lr * m_hat / (xp.sqrt(v / (1 - self.beta_2 ** t)) + self.epsilon)

    def get_config(self):
        return dict(super().get_config(), beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)


_OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "nadam": Nadam}
_BY_CLASS_NAME = {cls.__name__: cls for cls in _OPTIMIZERS.values()}


def get(identifier):
    """An Optimizer from a name ("sgd", "rmsprop", "adam", "nadam", with Keras' defaults) or an Optimizer."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in _OPTIMIZERS:
            raise ValueError(f"unknown optimizer {identifier!r}; known names: {', '.join(sorted(_OPTIMIZERS))}")
        return _OPTIMIZERS[key]()
    raise TypeError(f"optimizer must be a name or an Optimizer, got {type(identifier).__name__}")


serialize = utils.serialize_object


def deserialize(entry):
    return utils.deserialize_object(entry, _BY_CLASS_NAME, "optimizer")
