"""Hooks for test_hooks: one derives a version from each document, the next records what it got."""

SEEN: list[list[str]] = []


def derive(ws, user, versions):
    return [
        ws.catalog.put(user, b"summary of " + v.name.encode(), name=v.name + ".sum", kind="detections", parents=[v.id])
        for v in versions
        if v.kind == "document"
    ]


def record(ws, user, versions):
    SEEN.append([v.name for v in versions])


def broken(ws, user, versions):
    from casemate.errors import UsageError

    raise UsageError("this step failed on purpose")
