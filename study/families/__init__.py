"""Architecture families: name -> builder(**hyperparameters) -> PairModel. Importing this package registers all."""

from study.families.registry import (FAMILIES, N_DIGITS, PairModel, PairOutput, build_model,  # noqa: F401
                                     family_hyperparameters, get_builder, register_family)
from study.families import heads, pair_nets, report004  # noqa: F401,E402  (each module registers its families)
