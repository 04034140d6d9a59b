"""Hyperparameter studies of architecture families on the MNIST digit-pair task."""
