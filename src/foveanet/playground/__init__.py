"""The foveanet Playground: TensorFlow Playground's page served and trained by foveanet, and the
live CNN view (``foveanet playground``; docs/PLAYGROUND.md).

- ``app``: ``create_app()``, the Starlette app (routes, the socket, the limits);
- ``session``: one training session (the state, the data, the network, its frames, exports);
- ``limits``: the session registry shared by the views (``app.state.sessions``);
- ``cnn``: the CNN view's routes under ``/cnn``;
- ``static/``: the pages (plain HTML, CSS and JavaScript).

Starlette and uvicorn (the ``playground`` extra) are imported by ``app`` only.
"""


def create_app(*args, **kwargs):
    from .app import create_app as _create_app
    return _create_app(*args, **kwargs)


__all__ = ["create_app"]
