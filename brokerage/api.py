"""Pieces every API view shares: strict input fields, the error schema, pagination."""

from __future__ import annotations

import codecs
import json
import re
from typing import Any

from drf_spectacular.utils import OpenApiResponse
from rest_framework import parsers, serializers
from rest_framework.exceptions import NotAuthenticated, NotFound, ParseError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.utils.json import strict_constant

UNKNOWN_FIELD = "Unknown field."


def customer_id_of(request: Request) -> int:
    """The customer the request is authenticated as: the only customer a view acts for."""
    customer_id = request.user.id
    if customer_id is None:
        raise NotAuthenticated()
    return customer_id


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer, nothing else: no strings, no 10.0, no booleans."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class DigitsIntegerField(serializers.IntegerField):
    """A whole number in a query parameter: ASCII digits only, no "2.0", "+2" or " 2" (the
    paginator reads the raw parameter again, so what passes here must mean the same there)."""

    def to_internal_value(self, data: Any) -> int:
        if not (isinstance(data, str) and data.isascii() and data.isdigit()):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictRegexField(serializers.RegexField):
    """A string matching the whole pattern as sent: no numbers turned into strings, no
    whitespace trimmed away, and no trailing newline let through (a pattern's `$`
    matches before one)."""

    def __init__(self, regex: str, **kwargs: Any) -> None:
        super().__init__(regex, trim_whitespace=False, **kwargs)
        self._whole = re.compile(regex)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str) or not self._whole.fullmatch(data):
            self.fail("invalid")
        return super().to_internal_value(data)


class JSONParser(parsers.JSONParser):
    """DRF's, but stricter: a key given twice, and JSON nested too deep for Python's
    parser, make a malformed body too (no silent "last one wins")."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        encoding = parsers.get_encoding(parser_context or {})  # type: ignore[attr-defined]
        try:
            return json.load(
                codecs.getreader(encoding)(stream),
                parse_constant=strict_constant,
                object_pairs_hook=_object_without_repeated_keys,
            )
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


def _object_without_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        repeated = sorted({key for key, _ in pairs if sum(k == key for k, _ in pairs) > 1})
        raise ValueError(f"repeated keys {repeated}")
    return obj


class FlatSerializer(serializers.Serializer):
    """A serializer of plain fields, none of them a serializer, copied shallowly for each
    instance. DRF deep-copies declared fields, rebuilding every field from its arguments,
    for every serializer it creates: a fifth of a placement's CPU. The copies share only
    what no request changes (validators, messages, choices); each copy is bound to its own
    serializer."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {name: _shallow_copy(field) for name, field in self._declared_fields.items()}


def _shallow_copy(field: serializers.Field) -> serializers.Field:
    """copy.copy without its generic protocol (__reduce_ex__), which cost as much again."""
    clone = object.__new__(type(field))
    clone.__dict__.update(field.__dict__)
    return clone


class StrictInputSerializer(FlatSerializer):
    """Refuses fields it does not know: a misspelt `client_order_id` must not silently
    turn an idempotent retry into a second order."""

    def to_internal_value(self, data: Any) -> Any:
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        errors = {name: [UNKNOWN_FIELD] for name in unknown}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not isinstance(exc.detail, dict):
                raise
            raise serializers.ValidationError({**exc.detail, **errors}) from None
        if errors:
            raise serializers.ValidationError(errors)
        return value


def error_responses(*codes: int) -> dict:
    """The OpenAPI responses of these error statuses, for extend_schema."""
    return {code: OpenApiResponse(ErrorSerializer) for code in codes}


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="Machine-readable error code.")
    detail = serializers.CharField(help_text="What went wrong, for people.")
    # A declared field named like Serializer.fields: DRF's metaclass takes it out of the class.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Per-field messages when the request failed validation.",
    )


MAX_PAGE_SIZE = 200


class PageParameters(StrictInputSerializer):
    """A paginated list's own query parameters; a list's filters add theirs."""

    cursor = serializers.CharField(required=False, help_text="From a page's next/previous.")
    limit = DigitsIntegerField(
        required=False,
        min_value=1,
        max_value=MAX_PAGE_SIZE,
        help_text=f"Page size, 1 to {MAX_PAGE_SIZE} (default 50).",
    )


INVALID_CURSOR = "The cursor is not one of ours: take it from a page's next or previous."


class InvalidCursor(ParseError):
    """A 400 (DRF's is a 404, which reads as "no such list")."""

    default_detail = INVALID_CURSOR
    error_code = "invalid_cursor"  # the error body's code (brokerage.errors)


class _CursorPagination(CursorPagination):
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = MAX_PAGE_SIZE
    positions_are_numbers = False

    def decode_cursor(self, request: Request) -> Cursor | None:
        """DRF's decoding, and a clear 400 for any cursor that is not ours (DRF's 404 read
        as "no such list"), a non-numeric position included."""
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise InvalidCursor() from None
        if self.positions_are_numbers and cursor is not None and cursor.position is not None:
            try:
                int(cursor.position)
            except ValueError:
                raise InvalidCursor() from None
        return cursor


class NewestFirstCursorPagination(_CursorPagination):
    ordering = "-seq"
    positions_are_numbers = True


class BySymbolCursorPagination(_CursorPagination):
    ordering = "symbol"


class NewestEntryFirstCursorPagination(_CursorPagination):
    ordering = "-id"
    positions_are_numbers = True


def schema_endpoints_once(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """drf-spectacular's preprocessing hook: leave out the twin of each route that answers
    without its trailing slash."""
    slashed = {path for path, *_ in endpoints if path.endswith("/")}
    return [e for e in endpoints if e[0].endswith("/") or f"{e[0]}/" not in slashed]


def customer_endpoints_only(
    endpoints: list[tuple[Any, ...]], **kwargs: Any
) -> list[tuple[Any, ...]]:
    """drf-spectacular's preprocessing hook for the customers' docs: their API, not the
    exchange's callback."""
    return [e for e in endpoints if e[0].startswith("/api/")]
