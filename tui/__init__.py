"""Terminal UI for genaptitude-trainer: drives `core/` and turns its events into widgets."""
