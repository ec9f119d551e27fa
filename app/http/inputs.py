"""Input rules of every route: integer path parameters in ASCII digits, JSON bodies strict and unambiguous.

Litestar parses `{name:int}` with `int()`, which takes fullwidth digits, `_` and surrounding spaces, and
decodes a `data` body leniently (`strict=False`: `"10"` becomes 10). msgspec raises UnicodeDecodeError,
not a DecodeError, for invalid UTF-8, and keeps the last of duplicated keys without a word. So:

- `input_middleware` (after admission: a caller who may not use a route learns nothing of its inputs)
  refuses an int path parameter that is not ASCII digits, and decodes a routed handler's `data` body
  with `decode_json` and a strict decoder of its Struct before Litestar decodes it again (which then
  cannot fail or differ). Bounds: the Structs' `Meta` (app/inputs.py), the parameters' ge/le (below).
- `decode_json` is the one body decoder: the inference routes (hot and routed) call it from their
  service, the middleware for every other JSON body. Errors are `InputError`s naming the field.

Duplicate keys cost one more (untyped) decode and a count of the keys it holds against the count of
`"` + `:` in the bytes, which is at least the number of keys sent; only when the two differ (a duplicate,
or `":` inside a string) does Python's json module look at the key pairs. Measured: about 4 us on a
300-byte chat body, 14 us at 2 KB (the typed decode alone: 0.7 and 1.8 us); the untyped decode also checks
the UTF-8 of every string, including fields the Structs do not declare and the body forwards unread.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Annotated, Any, TypeVar, cast

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import PathParameter, QueryParameter
from litestar.routes import BaseRoute
from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

from app.inputs import I64_MAX, U16_MAX

T = TypeVar("T")

# Route parameters with their bounds (Litestar checks a parameter's own ge/le, not an inner msgspec Meta).
NetuidPath = Annotated[int, PathParameter(ge=0, le=U16_MAX, description="A subnet's netuid (0-65535).")]
NetuidQuery = Annotated[int | None, QueryParameter(ge=0, le=U16_MAX, description="A subnet's netuid.")]
StoredIdPath = Annotated[int, PathParameter(ge=0, le=I64_MAX)]

_AT = re.compile(r" - at `\$(.*)`$")
# A key's closing quote and its colon, with any JSON whitespace between.
_KEY_END = re.compile(rb'"[ \t\r\n]*:')
# Where a handler's body decoder is kept, in its own opt (read from its signature once).
_BODY_DECODER = "pylon_body_decoder"
_NOT_READ = object()


class InputError(ValueError):
    """A request input that is refused (400); `field` names it (`rpm`, `netuids[0]`, `weights`) if known.
    `malformed`: the bytes are not one unambiguous JSON value (as opposed to a value out of its type)."""

    def __init__(
        self, message: str, field: str | None = None, source: str = "body", *, malformed: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.source = source
        self.malformed = malformed

    def to_http(self, scope: HTTPScope) -> ValidationException:
        """As Litestar words its own validation errors (`extra` lists `{"message", "key", "source"}`),
        with the field and the message in `detail` too."""
        where = f"{self.source} field {self.field!r}" if self.field else self.source
        detail = f"Validation failed for {scope['method']} {scope['path']}: {where}: {self.message}"
        entry = {"message": self.message, "key": self.field, "source": self.source}
        return ValidationException(detail, extra=[entry])


def field_of(error: msgspec.ValidationError) -> str | None:
    """`rpm` from msgspec's "... - at `$.rpm`" (`netuids[0]`, `weights[...]` for a map's key or value)."""
    match = _AT.search(str(error))
    return match.group(1).lstrip(".") or None if match else None


def _count_keys(value: Any) -> int:
    count = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            count += len(item)
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
    return count


def _reject_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise InputError(f"duplicate key {key!r} in a JSON object", key, malformed=True)
        seen[key] = value
    return seen


def _not_utf8(raw: bytes) -> InputError:
    try:
        raw.decode()
    except UnicodeDecodeError as exc:
        return InputError(f"the body is not valid UTF-8 (byte {exc.start}: {exc.reason})", malformed=True)
    return InputError("the body is not valid UTF-8", malformed=True)


def check_json(raw: bytes) -> None:
    """Raise InputError unless `raw` is one well-formed JSON value, valid UTF-8, with no duplicate key."""
    try:
        value = msgspec.json.decode(raw)
    except UnicodeDecodeError:
        raise _not_utf8(raw) from None
    except msgspec.DecodeError as exc:
        raise InputError(f"the body is not valid JSON: {exc}", malformed=True) from None
    keys = _count_keys(value)
    if not keys:
        return
    # Spelled out: a generator over the four patterns cost more than the rest of the check.
    if b'" ' in raw or b'"\n' in raw or b'"\t' in raw or b'"\r' in raw:
        key_ends = len(_KEY_END.findall(raw))
    else:
        key_ends = raw.count(b'":')
    if key_ends != keys:
        json.loads(raw, object_pairs_hook=_reject_pairs)


def decode_json(decoder: msgspec.json.Decoder[T], raw: bytes) -> T:
    """The body as the decoder's type (strict: no strings for numbers), or an InputError naming the field."""
    check_json(raw)
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise InputError(str(exc), field_of(exc)) from None


def check_path_params(scope: Scope) -> None:
    """Every int path parameter as sent is ASCII digits (Litestar's `int()` also takes fullwidth
    digits, `1_0` and ` 1`; what `int()` refuses, such as `¹`, is Litestar's 404 as `abc` is)."""
    params = scope["path_params"]
    ints = [name for name, value in params.items() if type(value) is int]
    if not ints:
        return
    sent = dict(zip(scope["path_template"].split("/"), scope["path"].split("/"), strict=False))
    for name in ints:
        part = sent.get("{" + name + "}")
        if part is not None and not (part.isascii() and part.isdigit()):
            raise InputError(f"expected ASCII digits, got {part!r}", name, source="path")


def unparsed_path_param(routes: Iterable[BaseRoute], path: str) -> InputError | None:
    """Why Litestar's router found no route for `path` when one of its typed path parameters failed to
    parse (`int("¹")`): the route's shape matches, so the caller is told which parameter, not a 404."""
    parts = [part for part in path.split("/") if part]
    for route in routes:
        components = route.path_components
        if len(components) != len(parts):
            continue
        failed: InputError | None = None
        for component, part in zip(components, parts, strict=True):
            if isinstance(component, str):
                if component != part:
                    break
            elif component.parser is not None and failed is None:
                try:
                    component.parser(part)
                except ValueError:
                    expected = "ASCII digits" if component.type is int else component.type.__name__
                    failed = InputError(f"expected {expected}, got {part!r}", component.name, source="path")
        else:
            if failed is not None:
                return failed
    return None


def body_decoder(handler: BaseRouteHandler) -> msgspec.json.Decoder[Any] | None:
    """A strict decoder of the handler's `data` Struct (None: the handler takes no Struct body)."""
    decoder = handler.opt.get(_BODY_DECODER, _NOT_READ)
    if decoder is _NOT_READ:
        field = handler.parsed_fn_signature.parameters.get("data")
        body_type = None if field is None else field.annotation
        is_struct = isinstance(body_type, type) and issubclass(body_type, msgspec.Struct)
        decoder = msgspec.json.Decoder(body_type) if is_struct else None
        handler.opt[_BODY_DECODER] = decoder
    return decoder


def input_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler: BaseRouteHandler = scope["route_handler"]
            try:
                check_path_params(scope)
                decoder = body_decoder(handler)
                if decoder is not None:
                    decode_json(decoder, await Request(scope, receive, send).body())
            except InputError as exc:
                raise exc.to_http(cast(HTTPScope, scope)) from None
        await app(scope, receive, send)

    return middleware
