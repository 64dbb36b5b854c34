"""The manager app (label `manager`): autonomy, the tick, the queue, proposals, explanations and
learning metrics. The top domain layer: it reads the core, blueprints and runs and starts runs; no
lower layer imports it. It hears about the lower layers through their seams (see `listeners`)."""
