"""Evaluation metrics: R² per session, accuracy, phoneme error rate."""
