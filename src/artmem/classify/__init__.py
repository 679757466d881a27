"""Art classification: fine-tuning with the Cetinic 2018 scenarios, frozen-feature transfer, experiments.

Public entry points: `train_classifier` (one run), `predict` (top-k labels and probabilities),
`run_experiment` (initialisations x scenarios x tasks grids and the papers' tables), and the
generic training loop `artmem.training.loop.fit`.
"""
