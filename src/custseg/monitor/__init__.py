"""Monitoring: drift of live (captured) or given traffic against the training baseline
a model carries (`core/baseline`). `drift` holds the figures (pure), `traffic` reads the
window, `check` runs `custseg monitor` end to end, `html` renders its section."""
