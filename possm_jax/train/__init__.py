"""Training: optimiser, schedules, losses, sharding, train step, checkpoints, logging and plots."""
