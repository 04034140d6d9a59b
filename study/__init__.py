"""Hyperparameter studies that compare PyTorch architecture families on a task (MNIST digit pairs, CIFAR-100, your
own arrays, or a task of yours): each family searched with Ray Tune + Optuna, its best config rerun on many seeds into
MLflow, families compared with confidence intervals, paired tests and effect sizes. The commands are
`python -m study.<command>`; `python -m study` lists them."""

DISTRIBUTION = "architecture-family-study"
