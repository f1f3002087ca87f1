"""Live streams: cameras and feeds as resources, classified window by window, with action
events as they happen.

    source.py    the worker process that opens a URL with PyAV and sends sampled frames
    windows.py   the ring buffer of sampled frames and the causal windows over it
    events.py    hysteresis: window probabilities -> action start/end events
    stream.py    one running stream: its worker, windows, events and statistics
    manager.py   the registry: add, remove, restore after a restart, subscribe to events
    delivery.py  where events go: SSE subscribers, the webhook, Prometheus counters
    store.py     stream definitions in the jobs database (SQLAlchemy)
    serving.py   the one adapter onto the serving core (models, batchers, lifespan)
    routes.py    /streams
    schemas.py   request and response models
    settings.py  the `streams` settings group

Nothing here is imported by the rest of the service except `serving.py` (the lifespan hook)
and `routes.py` (the router); importing this package is cheap.
"""
