"""The latent adversary's terms (AAE, WAE-GAN): the discriminator's loss and accuracy on
logits of prior samples and of codes, and the encoder's per-sample generator loss."""

from keras import ops


def adversarial_terms(real_logits, fake_logits):
    """Discriminator loss `-(mean log D(p) + mean log(1 - D(q))) / 2` and its accuracy.

    Args:
        real_logits: `D`'s logits on prior samples `p` (label "prior").
        fake_logits: `D`'s logits on encoder codes `q` (label "code").

    Returns:
        `(loss, accuracy)`, scalars; the accuracy counts a logit above 0 on
        a prior sample and below 0 on a code as right.
    """
    real_logits = ops.reshape(real_logits, (-1,))
    fake_logits = ops.reshape(fake_logits, (-1,))
    loss = 0.5 * (ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits)))
    accuracy = 0.5 * (
        ops.mean(ops.cast(real_logits > 0, "float32"))
        + ops.mean(ops.cast(fake_logits < 0, "float32"))
    )
    return loss, accuracy


def generator_nll(fake_logits):
    """The encoder's per-sample adversarial loss `-log D(E(x))` from `D`'s logits on codes."""
    return ops.softplus(-ops.reshape(fake_logits, (-1,)))
