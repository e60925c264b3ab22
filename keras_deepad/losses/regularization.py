"""Weight regularisation of the one-class objectives (Deep SVDD, OC-NN)."""

from keras import ops


def weight_penalty(variables):
    """`sum ||W||_F^2` over the kernels (rank >= 2 weights) of `variables`."""
    squares = [ops.sum(ops.square(v)) for v in variables if len(v.shape) >= 2]
    return ops.sum(ops.stack(squares)) if squares else ops.convert_to_tensor(0.0)
