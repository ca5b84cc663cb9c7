"""Offline reactivation and replay in noisy path-integrating RNNs (docs/replay.md).

Modules: ``spatial``, ``head_direction``, ``paths`` (task generators), ``codes`` (target codes and decoders),
``tasks`` (generator + code by name), ``rnn`` (unified second-order update, GRU, :class:`ReplayRNN`), ``train``
(BPTT + Adam), ``quiescence`` (zero-input runs), ``metrics`` and ``plots``.
"""
