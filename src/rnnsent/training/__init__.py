"""Training: the pipeline of stages, the loop, optimisers, checkpoints and DDP."""
