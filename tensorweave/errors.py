"""Error classes, named and coded as TensorFlow 1.x's ``tf.errors``.

Every error raised about an op carries the op (``error.op``) and a message that names it, its
type and device, and the file:line where the user created it (see ``describe``).
"""

from __future__ import annotations

OK = 0
CANCELLED = 1
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
ALREADY_EXISTS = 6
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
ABORTED = 10
OUT_OF_RANGE = 11
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
DATA_LOSS = 15


class OpError(Exception):
    """Base of the runtime errors; ``op`` is the failing Operation (or None)."""

    error_code = UNKNOWN

    def __init__(self, node_def, op, message, error_code=None):
        super().__init__(message)
        self.node_def = node_def
        self.op = op
        self.message = message
        if error_code is not None:
            self.error_code = error_code

    def __str__(self):
        return self.message


def _make(name, code, doc):
    def __init__(self, node_def=None, op=None, message="", *args):
        OpError.__init__(self, node_def, op, message, code)
    return type(name, (OpError,), {"__init__": __init__, "error_code": code, "__doc__": doc})


CancelledError = _make("CancelledError", CANCELLED, "The step was cancelled.")
UnknownError = _make("UnknownError", UNKNOWN, "An error with no better class.")
InvalidArgumentError = _make("InvalidArgumentError", INVALID_ARGUMENT,
                             "An op received an argument it cannot accept.")
DeadlineExceededError = _make("DeadlineExceededError", DEADLINE_EXCEEDED,
                              "A deadline passed before the operation completed.")
NotFoundError = _make("NotFoundError", NOT_FOUND, "A requested entity was not found.")
AlreadyExistsError = _make("AlreadyExistsError", ALREADY_EXISTS, "The entity already exists.")
PermissionDeniedError = _make("PermissionDeniedError", PERMISSION_DENIED, "Permission denied.")
ResourceExhaustedError = _make("ResourceExhaustedError", RESOURCE_EXHAUSTED,
                               "A resource (memory, disk) ran out.")
FailedPreconditionError = _make("FailedPreconditionError", FAILED_PRECONDITION,
                                "The system is not in a state the operation needs "
                                "(for example, an uninitialized variable).")
AbortedError = _make("AbortedError", ABORTED, "The operation was aborted.")
OutOfRangeError = _make("OutOfRangeError", OUT_OF_RANGE, "Iterated past the valid range.")
UnimplementedError = _make("UnimplementedError", UNIMPLEMENTED, "Not implemented or supported.")
InternalError = _make("InternalError", INTERNAL, "An internal invariant was broken.")
UnavailableError = _make("UnavailableError", UNAVAILABLE, "A worker or service is unavailable.")
DataLossError = _make("DataLossError", DATA_LOSS, "Unrecoverable data loss or corruption.")


class PlacementError(InvalidArgumentError):
    """No device satisfies an op's constraints."""


def describe(op, device: str | None = None) -> str:
    """``'name' (Type on /device:CPU:0), created at file.py:12`` for error messages.

    ``device`` is where the op ran, when known; else the device the user requested."""
    if op is None:
        return "<no op>"
    device = device or op.device or "no device requested"
    where = op.location_str()
    return f"'{op.name}' ({op.type} on {device}), created at {where}"


def op_error(cls, op, message: str, device: str | None = None) -> OpError:
    """An error of class ``cls`` about ``op`` whose message leads with the op's description."""
    return cls(None, op, f"op {describe(op, device)}: {message}")
