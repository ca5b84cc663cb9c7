"""Human-BCI tasks on binned inputs: handwriting character classification and speech phoneme decoding (CTC).

Each task module exposes ``<Task>Config``, ``model_config``, ``train_dataset``, ``loss_fn``, ``evaluate`` and
``write_report``; :mod:`possm_jax.tasks.common` holds the shared pieces (iterators, streamed logits). See
``docs/tasks.md``.
"""
