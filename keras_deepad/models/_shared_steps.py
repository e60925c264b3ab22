"""One traced training loop per detector configuration, shared by every model of it.

Keras traces a model's training loop on its first `fit`, and TensorFlow
optimises the graph on its first run (together about 0.45 s on 2 CPU cores
for a small autoencoder: half of a 500-row, 50-epoch `fit`), so training ten
small detectors of one configuration (a seed bag, cross-validation, a
PyOD-style `fit` in a loop) pays it ten times.
The traced function reads the model's state only through its variables,
which it captures as resource handles: the same graph trains a second model
of the same configuration when it is called with that model's handles in
place of the first's (`ConcreteFunction.set_external_captures`, the way
SavedModel loading rebinds a restored function to new variables).

The configuration key holds everything a trace may read as a Python value:
the class and `get_config()` (without the model's name and seed), the input
shape, the dtype policy, every optimizer's config, `steps_per_execution`,
`jit_compile`, and the shape, dtype and updating optimizers of every variable
in tracking order. A model is never bound to a graph whose captures are not
all its own variables' counterparts (anything else a trace captured, such as
an eager constant, makes the configuration unshared), and only on one device,
without compiled metrics, a `compile(loss=...)` or a function set on the
instance (`model.train_step = ...`), whose Python objects the key does not see.
`model.share_training_graph = False` keeps a model on its own trace.
"""

from __future__ import annotations

import collections
import copy
import functools
import json
import types

import keras
import tensorflow as tf

#: Templates kept (least recently used dropped first): each holds one small model alive.
MAX_TEMPLATES = 8

# key -> (template model, its multi-step tf.function); OrderedDict as an LRU.
_TEMPLATES: collections.OrderedDict = collections.OrderedDict()
_UNSHAREABLE: set = set()


def _closure_value(function, name):
    """The value of the free variable `name` of a Python closure, or `None`."""
    code, cells = getattr(function, "__code__", None), getattr(function, "__closure__", None)
    if code is None or cells is None:
        return None
    for free, cell in zip(code.co_freevars, cells, strict=False):
        if free == name:
            return cell.cell_contents
    return None


def state_variables(model) -> list:
    """Every variable a training step may read or write, in a fixed tracking order."""
    found, seen = [], set()

    def add(variables):
        for variable in variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                found.append(variable)

    add(model.variables)
    add(model.metrics_variables)
    for name in model.optimizer_variables():
        optimizer = getattr(model, name, None)
        if optimizer is None:
            continue
        add(optimizer.variables)
        inner = getattr(optimizer, "inner_optimizer", None)
        if inner is not None:
            add(inner.variables)
    return found


def _handle(variable):
    value = getattr(variable, "value", variable)  # keras.Variable -> its tf.Variable
    return getattr(value, "handle", None)


def _without_names(config):
    """A serialised config without the names of its objects (new per object, never traced).

    A dict's `name` goes when it is one entry among others (a layer's, a model's or an
    optimizer's config); a dict of only a `name` (a dtype policy's config) keeps it.
    """
    if isinstance(config, dict):
        drop = "name" in config and len(config) > 1
        return {k: _without_names(v) for k, v in config.items() if not (drop and k == "name")}
    if isinstance(config, list):
        return [_without_names(v) for v in config]
    return config


def _config(model):
    """The detector's config without its name and seed.

    A detector's seed reaches its trace only through variables (the states of its
    `keras.random.SeedGenerator`s), which each model binds its own; the initial weights
    and the shuffle order it also sets are outside the trace. So do the arguments a class
    lists in `config_outside_trace`. (Tested: a template of
    another seed trains a model exactly as the model's own trace.)
    """
    config = _without_names(model.get_config())
    config.pop("seed", None)
    # Arguments a class declares to reach its trace only through variables' values
    # (OC-NN's `bandwidth` only scales the initial V).
    for name in getattr(model, "config_outside_trace", ()):
        config.pop(name, None)
    return config


def configuration_key(model):
    """What a trace of `model`'s training loop may depend on, or `None` (do not share)."""
    try:
        optimizers, updated_by = {}, {}
        for name, variables in model.optimizer_variables().items():
            if getattr(model, name, None) is not None:
                optimizers[name] = _without_names(keras.optimizers.serialize(getattr(model, name)))
            for variable in variables:
                updated_by.setdefault(id(variable), []).append(name)
        key = json.dumps(
            {
                "class": f"{type(model).__module__}.{type(model).__qualname__}",
                "config": _config(model),
                "feature_shape": list(model.feature_shape),
                "policy": model.dtype_policy.name,
                "optimizers": optimizers,
                "steps_per_execution": int(model.steps_per_execution),
                "jit_compile": bool(model.jit_compile),
                # Shape, dtype and which optimizers update each variable (frozen layers' none).
                "variables": [
                    [list(v.shape), str(v.dtype), sorted(updated_by.get(id(v), ()))]
                    for v in state_variables(model)
                ],
            },
            sort_keys=True,
            default=repr,
        )
    except (TypeError, ValueError, AttributeError):
        return None
    return key


#: Functions Keras itself sets on a model instance (wrappers and the compiled loops).
_KERAS_INSTANCE_FUNCTIONS = frozenset(
    {"build", "quantize", "train_function", "test_function", "predict_function"}
)


def _patched(model) -> bool:
    """Whether a function was set on the instance (`model.train_step = ...`): not in the key."""
    return any(
        isinstance(value, types.FunctionType | types.MethodType | functools.partial)
        and name not in _KERAS_INSTANCE_FUNCTIONS
        for name, value in vars(model).items()
    )


def _eligible(model) -> bool:
    return bool(
        getattr(model, "share_training_graph", True)
        and not _patched(model)
        and not model.run_eagerly
        and getattr(model, "_distribute_strategy", None) is None
        and not tf.distribute.has_strategy()
        and getattr(model, "_compile_metrics", None) is None
        and getattr(model, "_training_loss", None) is None
        and model.feature_shape is not None
    )


def shared_train_function(model, keras_function):
    """Wraps Keras' training `function` to run a configuration's shared trace.

    The first model of a configuration trains on its own trace and becomes
    the template; later models of it call the template's traced loop with
    their own variables. Returns `keras_function` itself where sharing does
    not apply.
    """
    if not _eligible(model):
        return keras_function
    multi_step = _closure_value(keras_function, "multi_step_on_iterator")
    if not isinstance(multi_step, tf.types.experimental.PolymorphicFunction):
        return keras_function  # another Keras: keep its own function
    key = configuration_key(model)
    if key is None or key in _UNSHAREABLE:
        return keras_function
    bound = {}

    def function(iterator):
        if not isinstance(iterator, tf.data.Iterator):
            return keras_function(iterator)
        spec = tuple(tf.nest.flatten(iterator.element_spec))
        step = bound.get(spec)
        if step is None:
            step = bound[spec] = _bind(model, key, multi_step, iterator) or keras_function
        if step is keras_function:
            return keras_function(iterator)
        outputs = step(iterator)
        if not outputs.has_value():
            raise StopIteration
        return outputs.get_value()

    return function


def _refuse(key):
    """Marks a configuration as one to trace per model (a bounded set)."""
    if len(_UNSHAREABLE) >= 16 * MAX_TEMPLATES:
        _UNSHAREABLE.clear()
    _UNSHAREABLE.add(key)
    _TEMPLATES.pop(key, None)


def _bind(model, key, own_multi_step, iterator):
    """The template's traced loop for `iterator` bound to `model`'s variables, or `None`."""
    template = _TEMPLATES.get(key)
    if template is None or template[0] is model:
        _TEMPLATES[key] = (model, own_multi_step)
        _TEMPLATES.move_to_end(key)
        while len(_TEMPLATES) > MAX_TEMPLATES:
            _TEMPLATES.popitem(last=False)
        return None  # the model traces for itself
    _TEMPLATES.move_to_end(key)
    template_model, template_step = template
    ours, theirs = state_variables(model), state_variables(template_model)
    if len(ours) != len(theirs):
        _refuse(key)
        return None
    handles = {}
    for mine, other in zip(ours, theirs, strict=True):
        handle, other_handle = _handle(mine), _handle(other)
        if handle is None or other_handle is None:
            _refuse(key)
            return None
        handles[id(other_handle)] = handle
    concrete = template_step.get_concrete_function(iterator)
    captures = []
    for captured in concrete.captured_inputs:
        mapped = handles.get(id(captured))
        if mapped is None:  # something other than the template's variables
            _refuse(key)
            return None
        captures.append(mapped)
    rebound = copy.copy(concrete)
    rebound.set_external_captures(captures)
    model._shared_training_graph = True
    return rebound


def clear():
    """Forgets every template (they hold their models alive)."""
    _TEMPLATES.clear()
    _UNSHAREABLE.clear()
