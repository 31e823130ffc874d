"""The engine: the one training loop, evaluation, checkpoints, run folders, subsets, DDP."""
