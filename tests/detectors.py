"""The one table of detectors the tests build: a new detector is one entry here.

Each `Case` says how to make the detector (a registry preset, seed 0) and, for
each suite that runs it, the arguments that size it for that suite:

- `contract`: the shared contract (`tests/models/test_contract.py`) and the Keras
  training features (`tests/models/test_keras_training.py`), on the blobs data;
  small networks trained for 3 epochs;
- `export`: the export zoo (`tests/export/`): dense layers of 64 units on the 16
  blobs features, 1024-element kernels, the smallest the TFLite converter
  quantises (it leaves smaller weights in float);
- `golden`: the golden models (`tests/golden/make_golden.py`): tiny networks whose
  files are committed; changing these arguments means regenerating them.

`None` leaves the detector out of that suite. The export zoo and the golden files
name a case `artifact` (default: the case name).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from keras_deepad.models import AE
from keras_deepad.registry import get_detector


@dataclasses.dataclass(frozen=True)
class Case:
    preset: str
    contract: dict | None = dataclasses.field(default_factory=dict)
    export: dict | None = None
    golden: dict | None = None
    artifact: str | None = None

    def factory(self, suite: str) -> Callable | None:
        """`() -> a fresh detector` sized for `suite`, or `None` if the suite skips it."""
        arguments = getattr(self, suite)
        if arguments is None:
            return None
        return functools.partial(_make, self.preset, arguments)


def _make(preset, arguments):
    arguments = dict(arguments)
    if "members" in arguments:  # ensembles: fresh members every time
        arguments["members"] = [make() for make in arguments["members"]]
    return get_detector(preset, **arguments, seed=0)


CASES = {
    "ae": Case(
        "ae",
        contract={"hidden_units": (32, 16), "latent_dim": 4},
        export={"hidden_units": (64,), "latent_dim": 4},
        golden={"hidden_units": (8,), "latent_dim": 2},
    ),
    "ae-seed": Case("ae-seed"),
    "ae-borghesi": Case("ae-borghesi"),
    "ae-denoising": Case("ae-denoising", contract={"hidden_units": (32,)}),
    "ae-robust": Case("ae-robust", contract={"hidden_units": (32,), "latent_dim": 4}),
    "vae": Case(
        "vae",
        contract={"hidden_units": (32, 16), "latent_dim": 4},
        # The Monte-Carlo ELBO: constant score noise in the graph, decoder samples on the host.
        export={"hidden_units": (64,), "latent_dim": 3, "mc_samples": 8, "score_method": "elbo"},
        golden={"hidden_units": (8,), "latent_dim": 2, "mc_samples": 4, "score_method": "elbo"},
    ),
    "vae-bernoulli": Case("vae-bernoulli", contract={"hidden_units": (32,)}),
    "deep-svdd": Case(
        "deep-svdd",
        contract={"hidden_units": (16,), "rep_dim": 8},
        golden={"hidden_units": (8,), "rep_dim": 4, "pretrain_epochs": 1},
        artifact="deep_svdd",
    ),
    "deep-svdd-soft": Case(
        "deep-svdd-soft",
        contract={"hidden_units": (16,), "rep_dim": 8, "warm_up_epochs": 1},
        export={"hidden_units": (64,), "rep_dim": 8, "pretrain_epochs": 1, "warm_up_epochs": 1},
        artifact="deep_svdd",
    ),
    "ocnn": Case(
        "ocnn",
        contract={"hidden_units": 64},
        export={"hidden_units": 64},
        golden={"hidden_units": 8},
    ),
    "aae": Case(
        "aae",
        contract={"hidden_units": (32, 16), "latent_dim": 4, "prior": "normal"},
        # "hybrid" (the default is "hybrid_knn", exported by the AE): both recipes exported.
        export={"hidden_units": (64,), "latent_dim": 3, "score_method": "hybrid"},
        golden={"hidden_units": (8,), "latent_dim": 2, "discriminator_units": (8,)},
    ),
    "wae-mmd": Case(
        "wae-mmd",
        contract={"hidden_units": (32, 16), "latent_dim": 4, "prior": "normal"},
        # The plain reconstruction error (the autoencoders above score a hybrid score).
        export={"hidden_units": (64,), "latent_dim": 3, "score_method": "reconstruction"},
        golden={"hidden_units": (8,), "latent_dim": 2},
        artifact="wae",
    ),
    "wae-gan": Case(
        "wae-gan", contract={"hidden_units": (32, 16), "latent_dim": 4, "prior": "normal"}
    ),
    "ensemble": Case(
        "ensemble",
        contract={
            "members": [
                functools.partial(AE, hidden_units=(16,), latent_dim=4, seed=0),
                functools.partial(
                    get_detector,
                    "deep-svdd",
                    hidden_units=(16,),
                    rep_dim=8,
                    pretrain_epochs=1,
                    seed=0,
                ),
            ]
        },
    ),
}


def factories(suite: str) -> dict[str, Callable]:
    """`{name: () -> detector}` of every case in `suite` (`"contract"`, `"export"`, `"golden"`).

    The contract names them by case; the export zoo and the golden files by artifact.
    """
    table = {}
    for name, case in CASES.items():
        factory = case.factory(suite)
        if factory is not None:
            key = name if suite == "contract" else case.artifact or name
            if key in table:
                raise ValueError(f"two cases of the {suite} suite are named {key!r}.")
            table[key] = factory
    return table
