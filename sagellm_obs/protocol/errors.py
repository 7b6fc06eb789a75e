"""Protocol error codes, the wire ``Error`` model and validation that reports bad fields by name.

``ErrorCode`` and ``Error`` match sageLLM protocol §4 on the wire. ``ProtocolValidationError`` and
:func:`validate` are our additions: they turn a pydantic ``ValidationError`` into one exception that
carries ``ErrorCode.INVALID_ARGUMENT``, the dotted path of every bad field and a message built from
pydantic's per-field reasons only: the raw input values pydantic attaches (prompts!) are dropped.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, TypedDict, TypeVar, overload

from pydantic import BaseModel, TypeAdapter, ValidationError

__all__ = [
    "Error",
    "ErrorCode",
    "FieldError",
    "ProtocolValidationError",
    "validate",
]

_M = TypeVar("_M", bound=BaseModel)

_MAX_MESSAGE_CHARS = 1024


class ErrorCode(str, Enum):
    """Error codes of the sageLLM protocol (§4), in the published order.

    The first five are the original codes; the next four came with the MVP (distributed runtime);
    the rest cover operators, communication, KV cache, compression, quantization and speculative
    decoding.
    """

    INVALID_ARGUMENT = "invalid_argument"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    UNAVAILABLE = "unavailable"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    NOT_IMPLEMENTED = "not_implemented"
    KV_TRANSFER_FAILED = "kv_transfer_failed"
    COMM_TIMEOUT = "comm_timeout"
    COMM_GROUP_INVALID = "comm_group_invalid"
    DISTRIBUTED_RUNTIME_ERROR = "distributed_runtime_error"
    OPERATOR_NOT_FOUND = "operator_not_found"
    INVALID_OPERATOR_MAPPING = "invalid_operator_mapping"
    OPERATOR_REGISTRATION_FAILED = "operator_registration_failed"
    COMM_BACKEND_NOT_SUPPORTED = "comm_backend_not_supported"
    COMM_RANK_MISMATCH = "comm_rank_mismatch"
    COMM_GROUP_NOT_FOUND = "comm_group_not_found"
    COMM_COLLECTIVE_FAILED = "comm_collective_failed"
    COMM_P2P_FAILED = "comm_p2p_failed"
    KV_PREFETCH_FAILED = "kv_prefetch_failed"
    KV_QOS_CONSTRAINT_VIOLATED = "kv_qos_constraint_violated"
    KV_PRIORITY_QUEUE_FULL = "kv_priority_queue_full"
    COMPRESSION_NOT_SUPPORTED = "compression_not_supported"
    QUANTIZATION_CALIBRATION_FAILED = "quantization_calibration_failed"
    SPECULATIVE_DECODING_FAILED = "speculative_decoding_failed"


# Codes for which retrying the same request later can succeed.
_RETRYABLE = frozenset(
    {ErrorCode.UNAVAILABLE, ErrorCode.DEADLINE_EXCEEDED, ErrorCode.RESOURCE_EXHAUSTED}
)


class FieldError(TypedDict):
    """One invalid field: its dotted path and a human-readable reason (never the input value)."""

    field: str
    message: str


class ProtocolValidationError(ValueError):
    """A protocol payload failed validation.

    Attributes:
        code: Always :attr:`ErrorCode.INVALID_ARGUMENT`.
        field: Dotted path of the first bad field (``"messages.0.content"``), or ``""`` when the
            payload as a whole is bad (not an object, malformed JSON).
        errors: Every bad field, in pydantic's order.
        model: Name of the type that was validated.
    """

    code: ErrorCode

    def __init__(self, model: str, errors: list[FieldError]) -> None:
        """Builds the exception; the message lists every field as ``"field: reason"``."""
        self.code = ErrorCode.INVALID_ARGUMENT
        self.model = model
        self.errors = errors
        self.field = errors[0]["field"] if errors else ""
        parts = [f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors]
        super().__init__(f"invalid {_snake(model)}: " + "; ".join(parts))

    def __reduce__(self) -> tuple[type[ProtocolValidationError], tuple[str, list[FieldError]]]:
        """Pickles by constructor arguments (the exception can cross process boundaries)."""
        return type(self), (self.model, self.errors)

    @classmethod
    def from_validation_error(
        cls, exc: ValidationError, model: str | None = None
    ) -> ProtocolValidationError:
        """Converts a pydantic ``ValidationError``, dropping the input values it carries.

        Args:
            exc: The pydantic error.
            model: Name used in the message; defaults to ``exc.title``.

        Returns:
            The equivalent ``ProtocolValidationError``.
        """
        errors: list[FieldError] = []
        for err in exc.errors(include_url=False, include_input=False):
            loc = [str(part) for part in err["loc"]]
            ctx = err.get("ctx", {})
            discriminator = ctx.get("discriminator")
            message = err["msg"]
            if err["type"].startswith("union_tag_") and isinstance(discriminator, str):
                loc.append(discriminator.strip("'"))  # the bad field is the discriminator itself
            if err["type"] == "union_tag_invalid":  # pydantic's message quotes the input tag
                message = (
                    f"Input tag does not match any of the expected tags: {ctx.get('expected_tags')}"
                )
            errors.append({"field": ".".join(loc), "message": message})
        return cls(model or exc.title, errors)


def _snake(name: str) -> str:
    """``ChatCompletionRequest`` -> ``chat_completion_request``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _type_name(tp: Any) -> str:
    """Best-effort name of a validated type, for messages."""
    name = getattr(tp, "__name__", None)
    return name if isinstance(name, str) and name != "Annotated" else "value"


@overload
def validate(model_cls: type[_M], data: Any, *, name: str | None = None) -> _M: ...
@overload
def validate(model_cls: Any, data: Any, *, name: str | None = None) -> Any: ...
def validate(model_cls: Any, data: Any, *, name: str | None = None) -> Any:
    """Validates a payload against a protocol type.

    Args:
        model_cls: A pydantic model class, a ``TypeAdapter``, or any type pydantic can validate
            (for example the ``StreamEvent`` union).
        data: A ``dict`` (or any Python object), or a JSON document as ``str``/``bytes``.
        name: Type name used in the message (``"StreamEvent"`` -> ``"invalid stream_event: ..."``);
            defaults to the class name.

    Returns:
        The validated instance.

    Raises:
        ProtocolValidationError: The payload is invalid; its message names each bad field, e.g.
            ``"invalid request: max_tokens: Input should be greater than 0"``.

    Examples:
        >>> from sagellm_obs.protocol import Request
        >>> validate(Request, '{"request_id": "r", "trace_id": "t", "max_tokens": 8}').max_tokens
        8
    """
    is_json = isinstance(data, (str, bytes, bytearray))
    name = name or _type_name(model_cls)
    try:
        if isinstance(model_cls, type) and issubclass(model_cls, BaseModel):
            if is_json:
                return model_cls.model_validate_json(data)
            return model_cls.model_validate(data)
        adapter: TypeAdapter[Any] = (
            model_cls if isinstance(model_cls, TypeAdapter) else TypeAdapter(model_cls)
        )
        if is_json:
            return adapter.validate_json(data)
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise ProtocolValidationError.from_validation_error(exc, name) from exc
    except RecursionError:  # a Python payload nested deeper than validation can follow
        raise ProtocolValidationError(
            name, [{"field": "", "message": "the payload is nested too deeply"}]
        ) from None


class Error(BaseModel):
    """Protocol error object (§4), carried by ``Response.error`` and ``StreamEventEnd.error``.

    Attributes:
        code: The error code.
        message: Human-readable message; must not contain sensitive information (prompts, tokens).
        retryable: Whether retrying the request may succeed; ``None`` when unknown.
    """

    code: ErrorCode
    message: str
    retryable: bool | None = None

    @classmethod
    def from_exception(cls, exc: BaseException) -> Error:
        """Maps an exception to a protocol error.

        ``ValueError`` (including ``ProtocolValidationError`` and pydantic's ``ValidationError``)
        maps to ``invalid_argument``, ``TimeoutError`` to ``deadline_exceeded``, ``MemoryError`` to
        ``resource_exhausted``, ``NotImplementedError`` to ``not_implemented`` and everything else
        (``ConnectionError`` included) to ``unavailable``.

        The message is ``"<ExceptionType>: <exception text>"``. Nothing else (no traceback, no
        locals) is included; pydantic errors are rendered field by field without their input
        values. Messages longer than 1024 characters are truncated.

        Args:
            exc: The exception to describe.

        Returns:
            An ``Error`` with ``retryable`` set for the transient codes.
        """
        if isinstance(exc, ValidationError):
            exc = ProtocolValidationError.from_validation_error(exc)
        if isinstance(exc, ProtocolValidationError):
            code = exc.code
        elif isinstance(exc, ValueError):
            code = ErrorCode.INVALID_ARGUMENT
        elif isinstance(exc, TimeoutError):
            code = ErrorCode.DEADLINE_EXCEEDED
        elif isinstance(exc, MemoryError):
            code = ErrorCode.RESOURCE_EXHAUSTED
        elif isinstance(exc, NotImplementedError):
            code = ErrorCode.NOT_IMPLEMENTED
        else:  # ConnectionError and anything unexpected.
            code = ErrorCode.UNAVAILABLE
        text = str(exc)
        message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        if len(message) > _MAX_MESSAGE_CHARS:
            message = message[: _MAX_MESSAGE_CHARS - 3] + "..."
        return cls(code=code, message=message, retryable=code in _RETRYABLE)
