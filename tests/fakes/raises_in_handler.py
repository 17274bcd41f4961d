"""Raises on every request: the runtime must answer with errorType and keep serving."""


class FakeRequestError(Exception):
    pass


def handler(event, context):
    raise FakeRequestError(f"bad request: {event!r}")
