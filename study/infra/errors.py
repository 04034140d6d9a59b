"""The one exception a user can cause: the CLIs print its message as one line and exit with status 2."""


class StudyError(Exception):
    """A bad name, file, value or address. The message names the culprit."""


class Interrupted(Exception):
    """Ctrl-C stopped a command; the message says how to resume. The CLIs exit with status 130."""


def first_line(exc: BaseException) -> str:
    """What a one-line error quotes of an exception: its message's first line, or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def named_first_line(exc: BaseException) -> str:
    """`Type: first line` for a message that must also say what kind of failure it was; `Type` when it has no text."""
    text = first_line(exc)
    name = type(exc).__name__
    return name if text == name else f"{name}: {text}"
