"""The one error family of banditd.

Every error a client can cause is a :class:`BanditError` subclass carrying its Personalizer error
``code``. The server maps each class to an HTTP status in one place (the request edge); nothing
else builds error responses.
"""

from __future__ import annotations


class BanditError(Exception):
    """Base of every error banditd reports to a client."""

    code: str = "InternalServerError"

    def __init__(self, message: str, *, target: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.target = target


class InvalidRequest(BanditError):
    """A request is malformed or violates a documented limit."""

    code = "InvalidRequest"


class InvalidRankRequest(InvalidRequest):
    """A rank request's body does not describe a valid decision."""

    code = "InvalidRankRequest"


class InvalidRewardRequest(InvalidRequest):
    """A reward's value is missing, not finite, or outside the configured range."""

    code = "InvalidRewardRequest"


class InvalidServiceConfiguration(InvalidRequest):
    """A service configuration is out of range or inconsistent."""

    code = "InvalidServiceConfiguration"


class InvalidRewardWaitTime(InvalidServiceConfiguration):
    """``rewardWaitTime`` is outside the allowed bounds."""

    code = "InvalidRewardWaitTime"


class InvalidLogRetentionDays(InvalidServiceConfiguration):
    """``logRetentionDays`` is neither -1 nor at least the reward wait time plus a day."""

    code = "InvalidLogRetentionDays"


class InvalidLearningModeServiceConfiguration(InvalidServiceConfiguration):
    """The learning mode was changed in the same request as the reward settings."""

    code = "InvalidLearningModeServiceConfiguration"


class InvalidPolicyConfiguration(InvalidRequest):
    """A learning-policy argument string is not a valid, safe ``cb_explore_adf`` command line."""

    code = "InvalidPolicyConfiguration"


class PayloadSizeExceeded(InvalidRequest):
    """A request body is larger than the server accepts."""

    code = "PayloadSizeExceeded"


class HeaderFieldsTooLarge(InvalidRequest):
    """The request line or a header field is longer than the server reads."""

    code = "RequestHeaderFieldsTooLarge"


class RequestTimedOut(BanditError):
    """A client did not send its request's headers or body within the server's timeout."""

    code = "RequestTimeout"


class EventNotFound(BanditError):
    """No decision with this event id is stored."""

    code = "ResourceNotFound"

    def __init__(self, event_id: str) -> None:
        super().__init__(f"No event with id {event_id!r} exists.", target="eventId")
        self.event_id = event_id


class NotFound(BanditError):
    """The path names no resource of this service."""

    code = "ResourceNotFound"


class EventConflict(BanditError):
    """A rank request reuses an event id with a different body."""

    code = "EventIdConflict"

    def __init__(self, event_id: str) -> None:
        super().__init__(
            f"Event id {event_id!r} was already used for a different rank request.",
            target="eventId",
        )
        self.event_id = event_id


class Unauthorized(BanditError):
    """The request carries no valid key for the operation."""

    code = "Unauthorized"


class Forbidden(BanditError):
    """The request's key is valid, but not for this operation (a client key on an admin route)."""

    code = "InvalidApiAccess"


class MethodNotAllowed(BanditError):
    """The path exists but not with this HTTP method.

    Attributes:
        allowed: the methods the path does take (the ``Allow`` header), in a fixed order.
    """

    code = "MethodNotAllowed"

    def __init__(self, message: str, *, allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allowed = allowed


class ServiceUnavailable(BanditError):
    """The service cannot take the request now (shutting down, store unavailable)."""

    code = "ServiceUnavailable"


class LeaseLost(ServiceUnavailable):
    """Another trainer holds the store's lease now: a fenced handle refuses the learner's
    writes (joins, checkpoints, publications), and the trainer that held it must stop."""


class StoreUnavailable(ServiceUnavailable):
    """The store cannot take a write now: the disk is full or failing, or another process
    holds the database's lock past the wait allowed. Nothing of the operation was written;
    the same request can be retried (503 with ``Retry-After``)."""


class InvalidEvaluationContract(InvalidRequest):
    """An offline evaluation or feature-importance request is malformed."""

    code = "InvalidEvaluationContract"


class DuplicateCustomPolicyNames(InvalidEvaluationContract):
    """Two policies of one evaluation share a name."""

    code = "DuplicateCustomPolicyNames"


class NoLogsExistInDateRange(InvalidRequest):
    """No joined events were logged in the requested time range."""

    code = "NoLogsExistInDateRange"


class InvalidExportLogsRequest(InvalidRequest):
    """A log export's time range is malformed."""

    code = "InvalidExportLogsRequest"


class InvalidImportLogsRequest(InvalidRequest):
    """A log import's mode is unknown, or a line of it is not labelled DSJSON (the message
    names the line); nothing of that import was stored."""

    code = "InvalidImportLogsRequest"


class InvalidModelImportFormat(InvalidRequest):
    """An imported model is not a signed banditd model archive holding a loadable model."""

    code = "InvalidModelImportFormat"


class InvalidModelImportSignature(InvalidRequest):
    """An imported model's signature does not match its content or this server's key."""

    code = "InvalidModelImportSignature"


class EvaluationNotFound(NotFound):
    """No offline evaluation with this id exists."""

    code = "EvaluationNotFound"


class FeatureImportanceNotFound(NotFound):
    """No feature-importance job with this id exists."""

    code = "ResourceNotFound"


class ResourceConflict(BanditError):
    """A resource id is reused with a different definition."""

    code = "Conflict"


class OperationNotAllowed(InvalidRequest):
    """The operation is valid but not allowed in the loop's current state."""

    code = "OperationNotAllowed"


class InvalidMultiSlotApiAccess(InvalidRequest):
    """A multi-slot operation was called on a loop that is not multi-slot."""

    code = "InvalidMultiSlotApiAccess"


def error_name(error: BanditError) -> str:
    """The name :func:`rebuild` finds the error's class by (a command's stored failure)."""
    return type(error).__name__


def rebuild(name: str, message: str, target: str | None = None) -> BanditError:
    """The error named ``name`` (a class of this module) with ``message`` and ``target``; a
    plain :class:`BanditError` (500) for a name this module does not define."""
    cls = globals().get(name)
    if isinstance(cls, type) and issubclass(cls, BanditError):
        try:
            return cls(message, target=target)
        except TypeError:  # a class whose constructor takes other arguments
            pass
    return BanditError(message, target=target)
