"""Architecture families: name -> builder(task, **hyperparameters) -> TaskModel. Importing this package registers
the built-in families."""

from study.families.registry import (FAMILIES, Family, TaskModel, build_model, families_of,  # noqa: F401
                                     family_hyperparameters, get_family, register_family)
from study.families import (cifar_nets, multihead, pair_heads, pair_nets,  # noqa: F401,E402  (each registers)
                            pair_trunks)
