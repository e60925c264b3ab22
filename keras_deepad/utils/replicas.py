"""Random draws and batch statistics of the global batch, inside a `tf.distribute` step.

Under a strategy with several replicas each replica holds a slice of the
global batch (Keras splits every global batch into consecutive slices,
replica 0 first). Noise drawn per replica would differ from what one
process draws for the same batch, and every replica would draw the same
numbers (they all hold the same generator state). Here every replica draws the
noise of the whole global batch from the same generator state and keeps
its own rows, so training under a strategy takes the steps of one process
with the same global batch; batch statistics (the WAE's MMD) are computed
over the gathered global batch. Outside a multi-replica step these are the
plain draw and the local batch.
"""

from __future__ import annotations

import tensorflow as tf


def _replica_context():
    """The replica context of a multi-replica step, or `None`."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def _rows(context, n):
    """`(offset, total)` of this replica's `n` rows in the global batch.

    Replicas hold equal slices (a last partial batch split unevenly is
    drawn as if it were even: close to, not equal to, one process's draw,
    as the replicas' loss means are for such a batch).
    """
    n = tf.cast(n, tf.int32)
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    return replica * n, n * context.num_replicas_in_sync


def global_draw(draw, n):
    """This replica's `n` rows of `draw(total)`, the draw for the whole global batch.

    Args:
        draw: `fn(rows) -> tensor of shape (rows, ...)`, drawing from a
            (mirrored) seed generator.
        n: rows of this replica's batch (a scalar tensor or int).
    """
    context = _replica_context()
    if context is None:
        return draw(n)
    offset, total = _rows(context, n)
    return draw(total)[offset : offset + n]


def gather_batch(*tensors):
    """`(gathered tensors, draw_rows)`: the global batch of each tensor and its row count.

    Gradients flow back through `all_gather` to each replica's own rows
    (summed over the replicas' losses, so a loss of the gathered batch is
    divided by the replica count like every other loss).
    """
    context = _replica_context()
    if context is None:
        return tensors, tf.shape(tensors[0])[0]
    gathered = tuple(
        tf.ensure_shape(context.all_gather(t, axis=0), (None, *t.shape[1:])) for t in tensors
    )
    return gathered, tf.shape(gathered[0])[0]
