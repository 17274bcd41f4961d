"""Raises while the module is imported: the runtime must report an init error."""


class FakeSetupError(Exception):
    pass


raise FakeSetupError("model bundle missing (raised at import)")


def handler(event, context):  # pragma: no cover - never reached
    return event
