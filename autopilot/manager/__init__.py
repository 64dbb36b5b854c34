"""The manager: autonomy, the tick, the queue, proposals, explanations and learning metrics."""
