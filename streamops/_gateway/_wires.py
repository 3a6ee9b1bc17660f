"""The three wires the gateway speaks: request shapes, error shapes, stream endings.

Each :class:`Wire` knows, for its route, how the client authenticates, what
the request's texts are (for input rules and prompt counts), how to ask the
upstream for a stream, and how errors look. A :class:`Writer` follows the
filtered events on their way to the client so that the gateway can end a
stream the way the provider would when a policy stops it early:

- budget cut: OpenAI chat gets a chunk with ``finish_reason: "length"`` and,
  when asked for (``stream_options.include_usage``), the usage chunk;
  Anthropic gets the ``content_block_stop`` of every open block, then
  ``message_delta`` with ``stop_reason: "max_tokens"`` and the usage, then
  ``message_stop``; Responses gets the ``*.done`` events of every open part
  and item and ``response.incomplete`` (``max_output_tokens``) with usage;
- block, timeout, upstream failure mid-stream: the wire's own error event.

The gateway always streams from the upstream (a non-streaming request is
streamed upstream and assembled here, after the policy), so one code path
applies the policy to both; :class:`Assembler` builds the JSON body of each
wire from the same events a streaming client would have received.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass
from typing import Any

from .._providers._wire import anthropic_error

__all__ = [
    "WIRES",
    "Assembler",
    "SSEData",
    "TextRef",
    "Usage",
    "Wire",
    "Writer",
    "json_bytes",
    "read_json",
    "utf8",
]


# One encoder for every event: json.dumps with options builds a new one per call.
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(value: Any) -> str:
    return _ENCODE(value)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODE_REQUEST = json.JSONDecoder(parse_constant=_no_constant).decode


def read_json(raw: bytes) -> Any:
    """A request body's JSON; ``ValueError`` (its message for the client) if it is not JSON.

    Strict JSON: ``NaN`` and ``Infinity`` are refused (they could not be sent
    upstream), and so is nesting too deep to parse.

    >>> read_json(b'{"temperature": NaN}')
    Traceback (most recent call last):
    ...
    ValueError: the request body is not JSON: NaN is not JSON
    """
    try:
        return _DECODE_REQUEST(raw.decode())
    except RecursionError:
        raise ValueError("the request body is not JSON we take: nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError too
        raise ValueError(f"the request body is not JSON: {exc}") from None


def utf8(text: str) -> bytes:
    """``text`` as UTF-8; surrogates (an upstream's ``\\ud83d`` escape) never raise.

    JSON's ``\\uXXXX`` escapes can spell surrogates, which ``json`` decodes as
    they are: a pair, once the policy joined its halves, becomes the character
    it stands for; a lone one becomes U+FFFD, as an invalid UTF-8 byte does.

    >>> utf8("a\\ud83d\\ude00b"), utf8("lone \\udc80")
    (b'a\\xf0\\x9f\\x98\\x80b', b'lone \\xef\\xbf\\xbd')
    """
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()


def json_bytes(value: Any) -> bytes:
    """``value`` as the UTF-8 JSON of a response body (see :func:`utf8`)."""
    return utf8(_ENCODE(value))


def _data_of(block: bytes) -> bytes:
    """The data of one SSE event block (LF line ends): its ``data`` lines, joined by LF."""
    parts: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            parts.append(value[1:] if value[:1] == b" " else value)
        elif line == b"data":
            parts.append(b"")
    return b"\n".join(parts)


class SSEData:
    """The ``data`` of each event of an SSE byte stream split anywhere (all the gateway reads).

    Providers end lines with LF and send one ``data:`` line per event: such a
    stream is split on blank lines as bytes, with no decoding and no event
    objects (the JSON parser takes the bytes). Anything else (a CR anywhere,
    a BOM at the start) goes from then on through :class:`streamops.SSEDecoder`,
    which implements the whole specification. Events with empty data are
    skipped.

    >>> d = SSEData()
    >>> d.feed(b'data: {"a"') + d.feed(b':1}\\n\\nevent: x\\ndata: 2\\ndata:3\\n\\n')
    [b'{"a":1}', b'2\\n3']
    >>> d.feed(b"data: 4\\r\\n\\r\\n")
    [b'4']
    """

    __slots__ = ("_buf", "_decoder", "_start")

    def __init__(self) -> None:
        self._buf = b""
        self._decoder: Any = None
        self._start = True

    def feed(self, raw: bytes) -> list[bytes]:
        """The data of the events ``raw`` completes."""
        decoder = self._decoder
        if decoder is None:
            buf = self._buf + raw if self._buf else raw
            if b"\r" not in buf and not (self._start and buf[:3] == b"\xef\xbb\xbf"):
                self._start = self._start and not buf
                *blocks, self._buf = buf.split(b"\n\n")
                out: list[bytes] = []
                for block in blocks:
                    if block[:6] == b"data: " and b"\n" not in block:
                        out.append(block[6:])  # the common case: one data line
                    elif data := _data_of(block):
                        out.append(data)
                return out
            from streamops import SSEDecoder

            decoder = self._decoder = SSEDecoder()
            raw, self._buf = buf, b""
        return [event.data.encode() for event in decoder.feed(raw) if event.data]


@dataclass
class Usage:
    """Token counts of one answer, as the gateway reports them on a cut."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class TextRef:
    """A place in the request body holding text: ``container[key]`` is a ``str``.

    ``owner``: the JSON string (tool-call arguments) whose decoded value
    ``root`` holds ``container``; a changed text re-encodes ``root`` into it,
    so a redaction keeps the arguments valid JSON.
    """

    container: Any
    key: Any
    owner: TextRef | None = None
    root: Any = None

    @property
    def text(self) -> str:
        value: str = self.container[self.key]
        return value

    @text.setter
    def text(self, value: str) -> None:
        if self.container[self.key] == value:
            return
        self.container[self.key] = value
        if self.owner is not None:
            self.owner.text = json.dumps(self.root, ensure_ascii=False)


# Keys whose string values are not text the model reads: identifiers, enums, media
# types, and payloads the provider reads as data or gave back opaque (a thinking
# block's signature, encrypted reasoning). Every other string of a message is text.
_NOT_TEXT = frozenset(
    {
        "type",
        "role",
        "id",
        "call_id",
        "tool_call_id",
        "tool_use_id",
        "item_id",
        "file_id",
        "container_id",
        "model",
        "media_type",
        "mime_type",
        "detail",
        "format",
        "status",
        "signature",
        "encrypted_content",
        "encrypted_index",
    }
)
_BASE64 = frozenset({"data", "file_data"})
"""Base64 media (an image, a PDF, audio): text only in a plain-text source (``type: text``)."""
_OPAQUE_BY_TYPE = frozenset({("image_generation_call", "result")})
"""``(type, key)``: a generated image's base64 that a Responses input may carry back."""


def _is_text(container: dict[str, Any], key: Any, value: str) -> bool:
    if key in _NOT_TEXT:
        return False
    if key == "name":
        return "role" in container  # a message author's name; not a tool's or a file's
    if key in _BASE64 and container.get("type") != "text":
        return False
    if value[:5] == "data:" and ";base64," in value[:100]:
        return False  # inline media (an image's data URL)
    return (container.get("type"), key) not in _OPAQUE_BY_TYPE


def _decoded_json(text: str) -> Any:
    """``text`` decoded if it is a JSON object or array (tool-call arguments), else ``None``."""
    if text[:1] not in ("{", "["):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, (dict, list)) else None


def _walk(value: Any) -> list[TextRef]:
    """Every text in ``value`` (part of a request): the strings the model reads.

    All strings are text except the values of :data:`_NOT_TEXT` keys and base64
    media. Tool-call arguments (a JSON string) are decoded, and their string
    values are texts (each change re-encodes them); within them, and within a
    tool call's ``input`` object, every string is the model's own data, so all
    of them are texts whatever their keys. Iterative: a deep body cannot
    exhaust the stack.
    """
    refs: list[TextRef] = []
    # (value, every string is text, the arguments string holding it, its decoded root)
    stack: list[tuple[Any, bool, TextRef | None, Any]] = [(value, False, None, None)]
    while stack:
        node, data, owner, root = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in items:
            if isinstance(item, str):
                if data or not isinstance(node, dict):
                    refs.append(TextRef(node, key, owner, root))
                elif _is_text(node, key, item):
                    ref = TextRef(node, key, owner, root)
                    decoded = _decoded_json(item) if key == "arguments" else None
                    if decoded is None:
                        refs.append(ref)
                    else:
                        stack.append((decoded, True, ref, decoded))
            elif isinstance(item, (dict, list)):
                inner = data or (key == "input" and isinstance(node, dict))
                stack.append((item, inner, owner, root))
    return refs


def _field_refs(body: dict[str, Any], *fields: str) -> list[TextRef]:
    """The texts of the request's top-level ``fields`` (a string, or a list of parts)."""
    refs: list[TextRef] = []
    for name in fields:
        value = body.get(name)
        if isinstance(value, str):
            refs.append(TextRef(body, name))
        elif isinstance(value, (dict, list)):
            refs += _walk(value)
    return refs


def _description_refs(body: dict[str, Any], *fields: str) -> list[TextRef]:
    """The ``description`` texts of the tool definitions in ``fields``, at any depth.

    A tool's description, and those of its parameters' schema, are text the
    model reads; names, types, enum values and the rest of the schema are the
    tool's interface and stay as they are. Iterative, like :func:`_walk`.
    """
    refs: list[TextRef] = []
    stack: list[Any] = [body.get(name) for name in fields]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, item in node.items():
                if key == "description" and isinstance(item, str):
                    refs.append(TextRef(node, key))
                elif isinstance(item, (dict, list)):
                    stack.append(item)
        elif isinstance(node, list):
            stack += [item for item in node if isinstance(item, (dict, list))]
    return refs


class Writer(abc.ABC):
    """Follows one answer's events to the client; ends it as the provider would."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.sent = 0
        """Events handed out so far."""

    @abc.abstractmethod
    def feed(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Track one filtered event; return what to send (possibly nothing)."""

    @property
    @abc.abstractmethod
    def complete(self) -> bool:
        """True once the provider's own end event went through."""

    @abc.abstractmethod
    def cut(self, usage: Usage) -> list[dict[str, Any]]:
        """The events that end a stream cut by a budget: the provider's length finish."""

    @abc.abstractmethod
    def error(self, status: int, message: str, code: str) -> dict[str, Any]:
        """The wire's error event."""

    @abc.abstractmethod
    def encode(self, data: dict[str, Any]) -> bytes:
        """One event as SSE bytes."""

    def reuse(self, data: dict[str, Any], item: dict[str, Any], raw: bytes) -> bytes | None:
        """``data`` (one event of the last ``feed``) as SSE bytes made of ``raw``, else ``None``.

        ``raw`` is the JSON of ``item``, the upstream's last event, as the
        upstream sent it: an event that went through unchanged is sent as
        those bytes, not serialised again.
        """
        if data is item and b"\n" not in raw:
            return self._frame(data, raw)
        return None

    def _frame(self, data: dict[str, Any], raw: bytes) -> bytes:
        return b"data: " + raw + b"\n\n"

    def done(self) -> bytes:
        """What follows the last event (``data: [DONE]`` on OpenAI chat)."""
        return b""


class Assembler(abc.ABC):
    """Builds a non-streamed answer's JSON body from the events a stream would have sent."""

    @abc.abstractmethod
    def add(self, data: dict[str, Any]) -> None:
        """Take one event."""

    @abc.abstractmethod
    def body(self) -> dict[str, Any]:
        """The JSON body of the whole answer."""


class Wire(abc.ABC):
    """One route: its request texts, upstream request, error shape, writer and assembler."""

    route: str
    path: str

    @abc.abstractmethod
    def texts(self, body: dict[str, Any]) -> list[TextRef]:
        """Every text of the request the model would read (input rules apply to them)."""

    fields: tuple[tuple[str, tuple[type, ...], str], ...] = (
        ("model", (str,), "a string"),
        ("stream", (bool,), "true or false"),
    )
    """Request fields the gateway reads: name, the JSON types allowed, what to say."""

    def invalid(self, body: dict[str, Any]) -> str | None:
        """Why the gateway refuses the request with 400 before calling the upstream (``None``: ok).

        The fields the gateway reads itself must have their JSON types (a
        ``"stream": "false"`` is not false); a field may be absent or null.
        """
        for name, kinds, expected in self.fields:
            value = body.get(name)
            if value is not None and (type(value) not in kinds):
                return f"'{name}' must be {expected}, got {json.dumps(value)[:40]}"
        return None

    def upstream_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body sent upstream: the same request, always streamed."""
        return {**body, "stream": True}

    def presented_key(self, headers: Any) -> str | None:
        """The client's key: ``Authorization: Bearer KEY`` (OpenAI wire)."""
        auth = headers.get("authorization")
        if auth and auth[:7].lower() == "bearer ":
            return str(auth[7:].strip()) or None
        return None

    @abc.abstractmethod
    def error_body(self, status: int, message: str, code: str) -> dict[str, Any]:
        """The JSON body of an error response."""

    @abc.abstractmethod
    def writer(self, body: dict[str, Any]) -> Writer:
        """A fresh writer for one streamed answer."""

    @abc.abstractmethod
    def assembler(self, body: dict[str, Any]) -> Assembler:
        """A fresh assembler for one non-streamed answer."""

    def ended(self, last: Any) -> bool:
        """True if ``last``, an upstream's last event, ends its answer (chat: a finish reason).

        Chat's own end is ``data: [DONE]``; a body that ends without it is
        complete only if its last chunk finished the answer.
        """
        if not isinstance(last, dict):
            return False
        choices = last.get("choices")
        return (not choices and bool(last.get("usage"))) or any(
            c.get("finish_reason") for c in choices or ()
        )

    def upstream_error(self, data: dict[str, Any]) -> str | None:
        """What is wrong with one upstream event: an error event's message, or a malformed one.

        ``None``: a good event. A malformed event (a field of the wrong JSON
        type where the gateway, its writers or the provider lens read it) is
        the upstream's failure (502), never the gateway's own.
        """
        error = data.get("error")
        if error is not None:
            return _error_message(error)
        choices = data.get("choices")
        if choices is not None:
            if type(choices) is not list:
                return _malformed("choices")
            for choice in choices:
                if type(choice) is not dict:
                    return _malformed("choices[]")
                delta = choice.get("delta")
                if delta is not None:
                    if type(delta) is not dict:
                        return _malformed("choices[].delta")
                    if wrong := _wrong(delta, _CHAT_DELTA):
                        return _malformed(f"choices[].delta.{wrong}")
                    calls = delta.get("tool_calls")
                    if calls is not None and (
                        type(calls) is not list
                        or any(type(c) is not dict or _wrong(c, _CHAT_CALL) for c in calls)
                    ):
                        return _malformed("choices[].delta.tool_calls")
                if wrong := _wrong(choice, _CHAT_CHOICE):
                    return _malformed(f"choices[].{wrong}")
        usage = data.get("usage")
        if usage is not None and type(usage) is not dict:
            return _malformed("usage")
        return None


_Shape = dict[str, tuple[type, ...]]
_STR: tuple[type, ...] = (str, type(None))
_INT: tuple[type, ...] = (int, type(None))
_DICT: tuple[type, ...] = (dict, type(None))
_CHAT_CHOICE: _Shape = {"index": _INT, "finish_reason": _STR}
_CHAT_DELTA: _Shape = {
    "role": _STR,
    "content": _STR,
    "refusal": _STR,
    "reasoning_content": _STR,
    "reasoning": _STR,
    "function_call": _DICT,
}
_CHAT_CALL: _Shape = {"index": _INT, "id": _STR, "function": _DICT}


def _wrong(data: dict[str, Any], shape: _Shape) -> str | None:
    """The first field of ``data`` whose value's type ``shape`` does not allow.

    Every shape allows a field to be absent (null), so only ``data``'s own
    fields are looked at: a chat delta has one or two, its shape six.
    """
    for name, value in data.items():
        kinds = shape.get(name)
        if kinds is not None and (
            type(value) not in kinds or (type(value) is dict and not _strings_ok(value))
        ):
            return name
    return None


def _strings_ok(value: dict[str, Any]) -> bool:
    """A function call's ``name`` and ``arguments`` are strings (or absent)."""
    return all(type(value.get(k)) in _STR for k in ("name", "arguments"))


def _malformed(where: str) -> str:
    return f"the upstream sent a malformed event ({where} has the wrong type)"


def _error_message(error: Any) -> str:
    """The message of an error event's ``error`` (an object, or a bare string)."""
    if isinstance(error, dict):
        return str(error.get("message") or "upstream error")
    return str(error) or "upstream error"


_OPENAI_KINDS = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_denied",
    404: "not_found",
    429: "rate_limit_exceeded",
}


def _openai_error(status: int, message: str, code: str) -> dict[str, Any]:
    kind = _OPENAI_KINDS.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# --------------------------------------------------------------------------
# OpenAI chat completions
# --------------------------------------------------------------------------

_NULL_USAGE = b',"usage":null}'
_MISSING: Any = object()
_SPLICED = {k: f'"{k}"'.encode() for k in ("content", "reasoning_content", "reasoning", "refusal")}
"""The delta texts :func:`_splice` may write into an upstream chunk's bytes, by JSON key."""


def _splice(data: dict[str, Any], item: dict[str, Any], raw: bytes) -> bytes | None:
    """``raw``, the JSON of the chat chunk ``item``, made the JSON of ``data``; else ``None``.

    Only for a ``data`` that is ``item`` with some delta texts replaced (what
    the provider lens makes of a chunk whose text a policy changed): every
    other value must be the very object ``item`` holds. Each changed text is
    found by its key, which must occur once in ``raw`` (with no ``\\u``
    escape in ``raw``, a key spelled by escapes cannot hide a second one), and
    its old value must follow as this module would encode it; otherwise
    ``None`` and the caller serialises ``data`` whole. A text is never left
    behind: either each changed one is replaced where it stands, or nothing is
    reused.
    """
    if len(data) != len(item) or b"\\u" in raw:
        return None
    for key, value in data.items():
        if key != "choices" and item.get(key, _MISSING) is not value:
            return None
    choices, old_choices = data.get("choices"), item.get("choices")
    if type(choices) is not list or type(old_choices) is not list:
        return None
    if len(choices) != 1 or len(old_choices) != 1:
        return None
    choice, old_choice = choices[0], old_choices[0]
    if type(choice) is not dict or type(old_choice) is not dict or len(choice) != len(old_choice):
        return None
    for key, value in choice.items():
        if key != "delta" and old_choice.get(key, _MISSING) is not value:
            return None
    delta, old_delta = choice.get("delta"), old_choice.get("delta")
    if type(delta) is not dict or type(old_delta) is not dict or len(delta) != len(old_delta):
        return None
    for key, value in delta.items():
        old = old_delta.get(key, _MISSING)
        if old is value:
            continue
        name = _SPLICED.get(key)
        if name is None or type(value) is not str or type(old) is not str:
            return None
        if raw.count(name) != 1:
            return None
        at = raw.index(name) + len(name)
        was = utf8(dumps(old))
        if raw[at : at + 1] != b":" or not raw.startswith(was, at + 1):
            return None
        raw = raw[: at + 1] + utf8(dumps(value)) + raw[at + 1 + len(was) :]
    return raw


_CHUNK_HEAD = ("id", "object", "created", "model", "system_fingerprint", "service_tier")


class ChatWriter(Writer):
    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.want_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self.head: dict[str, Any] = {}
        self.finished = False
        self.usage_sent = False
        self._unasked: dict[str, Any] | None = None  # the last event fed, without its usage
        self._fed: dict[str, Any] | None = None  # the last event fed

    def feed(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        self._fed = data
        if not self.head:
            self.head = {k: data[k] for k in _CHUNK_HEAD if k in data}
        choices = data.get("choices")
        if "usage" in data:
            if not self.want_usage:
                if not choices and data.get("usage"):
                    return []  # the usage chunk the client did not ask for
                data = self._unasked = {k: v for k, v in data.items() if k != "usage"}
            elif data.get("usage"):
                self.usage_sent = True
        for choice in choices or ():
            if choice.get("finish_reason"):
                self.finished = True
        self.sent += 1
        return [data]

    @property
    def complete(self) -> bool:
        return self.finished

    def _head(self) -> dict[str, Any]:
        head = {
            "id": "chatcmpl-gateway",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": self.body.get("model") or "",
        }
        return {**head, **self.head}

    def cut(self, usage: Usage) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not self.finished:
            choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
            chunk = {**self._head(), "choices": [choice]}
            if self.want_usage:
                chunk["usage"] = None
            out.append(chunk)
            self.finished = True
        if self.want_usage and not self.usage_sent:
            numbers = {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            }
            out.append({**self._head(), "choices": [], "usage": numbers})
            self.usage_sent = True
        self.sent += len(out)
        return out

    def error(self, status: int, message: str, code: str) -> dict[str, Any]:
        return _openai_error(status, message, code)

    def reuse(self, data: dict[str, Any], item: dict[str, Any], raw: bytes) -> bytes | None:
        fed = self._fed
        if fed is not item and fed is not None:
            # A chunk whose text the policy changed: the new text spliced into the
            # upstream's bytes costs less than serialising the whole chunk again.
            spliced = _splice(fed, item, raw)
            if spliced is None:
                return None
            item, raw = fed, spliced
        # The gateway asks for usage: each upstream chunk then ends with "usage":null,
        # which a client that did not ask for it must not get.
        if (
            data is self._unasked
            and item.get("usage") is None
            and raw.endswith(_NULL_USAGE)
            and raw.count(b'"usage"') == 1
            and b"\n" not in raw
        ):
            return b"data: " + raw[: -len(_NULL_USAGE)] + b"}\n\n"
        return super().reuse(data, item, raw)

    def encode(self, data: dict[str, Any]) -> bytes:
        return b"data: " + utf8(dumps(data)) + b"\n\n"

    def done(self) -> bytes:
        return b"data: [DONE]\n\n"


class ChatAssembler(Assembler):
    def __init__(self, body: dict[str, Any]) -> None:
        self.request = body
        self.head: dict[str, Any] = {}
        self.message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        self.texts: dict[str, list[str]] = {}
        self.tools: dict[int, dict[str, Any]] = {}
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None

    def add(self, data: dict[str, Any]) -> None:
        if not self.head:
            self.head = {k: data[k] for k in _CHUNK_HEAD if k in data}
        self.usage = data.get("usage") or self.usage
        for choice in data.get("choices") or ():
            delta = choice.get("delta") or {}
            for name in ("content", "refusal", "reasoning_content", "reasoning"):
                if isinstance(delta.get(name), str):
                    self.texts.setdefault(name, []).append(delta[name])
            for call in delta.get("tool_calls") or ():
                slot = self.tools.setdefault(
                    call.get("index", 0),
                    {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                slot["id"] = call.get("id") or slot["id"]
                fn = call.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
            self.finish = choice.get("finish_reason") or self.finish

    def body(self) -> dict[str, Any]:
        message = dict(self.message)
        for name, parts in self.texts.items():
            message[name] = "".join(parts)
        if self.tools:
            message["tool_calls"] = [self.tools[i] for i in sorted(self.tools)]
        head = {"id": "chatcmpl-gateway", "created": 0, "model": self.request.get("model") or ""}
        head.update({k: v for k, v in self.head.items() if k != "object"})
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish}
        return {**head, "object": "chat.completion", "choices": [choice], "usage": self.usage}


class Chat(Wire):
    route = "chat.completions"
    path = "/v1/chat/completions"
    fields = (
        *Wire.fields,
        ("messages", (list,), "a list of messages"),
        ("stream_options", (dict,), "an object"),
        ("n", (int,), "an integer"),
    )

    def invalid(self, body: dict[str, Any]) -> str | None:
        problem = super().invalid(body)
        if problem is None and body.get("n") not in (None, 1):
            # The gateway filters one answer; several choices would be billed, then refused.
            return "'n' must be 1: the gateway serves one choice per request"
        return problem

    def texts(self, body: dict[str, Any]) -> list[TextRef]:
        return _field_refs(body, "messages") + _description_refs(body, "tools", "functions")

    def upstream_body(self, body: dict[str, Any]) -> dict[str, Any]:
        options = {**(body.get("stream_options") or {}), "include_usage": True}
        return {**body, "stream": True, "stream_options": options}

    def error_body(self, status: int, message: str, code: str) -> dict[str, Any]:
        return _openai_error(status, message, code)

    def writer(self, body: dict[str, Any]) -> Writer:
        return ChatWriter(body)

    def assembler(self, body: dict[str, Any]) -> Assembler:
        return ChatAssembler(body)


# --------------------------------------------------------------------------
# Anthropic messages
# --------------------------------------------------------------------------


def _sse_event(data: dict[str, Any]) -> bytes:
    return _sse_event_raw(data, utf8(dumps(data)))


def _sse_event_raw(data: dict[str, Any], raw: bytes) -> bytes:
    return b"event: " + str(data.get("type")).encode() + b"\ndata: " + raw + b"\n\n"


class MessagesWriter(Writer):
    def __init__(self, body: dict[str, Any], prompt_tokens: int = 0) -> None:
        super().__init__(body)
        self.prompt_tokens = prompt_tokens
        self.started = False
        self.open: list[int] = []
        self.delta_sent = False
        self.stopped = False

    def feed(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        kind = data.get("type")
        if kind == "message_start":
            self.started = True
            usage = (data.get("message") or {}).get("usage") or {}
            self.prompt_tokens = usage.get("input_tokens", self.prompt_tokens)
        elif kind == "content_block_start":
            self.open.append(data.get("index", 0))
        elif kind == "content_block_stop":
            index = data.get("index", 0)
            if index in self.open:
                self.open.remove(index)
        elif kind == "message_delta":
            self.delta_sent = True
        elif kind == "message_stop":
            self.stopped = True
        self.sent += 1
        return [data]

    @property
    def complete(self) -> bool:
        return self.stopped

    def cut(self, usage: Usage) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not self.started:
            out.append(
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_gateway",
                        "type": "message",
                        "role": "assistant",
                        "content": [],
                        "model": self.body.get("model") or "",
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": 0},
                    },
                }
            )
        out += [{"type": "content_block_stop", "index": i} for i in self.open]
        self.open = []
        if not self.delta_sent:
            delta = {"stop_reason": "max_tokens", "stop_sequence": None}
            numbers = {"output_tokens": usage.completion_tokens}
            out.append({"type": "message_delta", "delta": delta, "usage": numbers})
        if not self.stopped:
            out.append({"type": "message_stop"})
        self.started = self.delta_sent = self.stopped = True
        self.sent += len(out)
        return out

    def error(self, status: int, message: str, code: str) -> dict[str, Any]:
        return anthropic_error(status, message)

    def encode(self, data: dict[str, Any]) -> bytes:
        return _sse_event(data)

    def _frame(self, data: dict[str, Any], raw: bytes) -> bytes:
        return _sse_event_raw(data, raw)


class MessagesAssembler(Assembler):
    def __init__(self, body: dict[str, Any]) -> None:
        self.request = body
        self.message: dict[str, Any] = {}
        self.blocks: dict[int, dict[str, Any]] = {}
        self.json: dict[int, list[str]] = {}
        self.delta: dict[str, Any] = {}
        self.usage: dict[str, Any] = {}

    def add(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "message_start":
            self.message = dict(data.get("message") or {})
            self.usage.update(self.message.get("usage") or {})
        elif kind == "content_block_start":
            index = data.get("index", 0)
            self.blocks[index] = dict(data.get("content_block") or {})
        elif kind == "content_block_delta":
            index = data.get("index", 0)
            block = self.blocks.setdefault(index, {"type": "text", "text": ""})
            delta = data.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                block["text"] = block.get("text", "") + delta.get("text", "")
            elif dtype == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
            elif dtype == "signature_delta":
                block["signature"] = block.get("signature", "") + delta.get("signature", "")
            elif dtype == "input_json_delta":
                self.json.setdefault(index, []).append(delta.get("partial_json", ""))
        elif kind == "message_delta":
            self.delta.update(data.get("delta") or {})
            self.usage.update(data.get("usage") or {})

    def body(self) -> dict[str, Any]:
        for index, parts in self.json.items():
            text = "".join(parts)
            try:
                self.blocks[index]["input"] = json.loads(text) if text else {}
            except ValueError:
                self.blocks[index]["input"] = {}
        message = {
            "id": "msg_gateway",
            "type": "message",
            "role": "assistant",
            "model": self.request.get("model") or "",
            "stop_sequence": None,
            **self.message,
        }
        message["content"] = [self.blocks[i] for i in sorted(self.blocks)]
        message["stop_reason"] = self.delta.get("stop_reason")
        message["stop_sequence"] = self.delta.get("stop_sequence")
        message["usage"] = {"input_tokens": 0, "output_tokens": 0, **self.usage}
        return message


_NEEDED_DICT: tuple[type, ...] = (dict,)
_MESSAGES_SHAPES: dict[str, _Shape] = {
    "message_start": {"message": _NEEDED_DICT},
    "content_block_start": {"index": _INT, "content_block": _NEEDED_DICT},
    "content_block_delta": {"index": _INT, "delta": _NEEDED_DICT},
    "content_block_stop": {"index": _INT},
    "message_delta": {"delta": _DICT, "usage": _DICT},
}
_BLOCK_DELTA: _Shape = {"text": _STR, "thinking": _STR, "partial_json": _STR, "signature": _STR}


class Messages(Wire):
    route = "messages"
    path = "/v1/messages"
    fields = (
        *Wire.fields,
        ("messages", (list,), "a list of messages"),
        ("system", (str, list), "a string or a list of text blocks"),
    )

    def texts(self, body: dict[str, Any]) -> list[TextRef]:
        return _field_refs(body, "system", "messages") + _description_refs(body, "tools")

    def presented_key(self, headers: Any) -> str | None:
        key = headers.get("x-api-key")
        if key:
            return str(key).strip() or None
        return super().presented_key(headers)

    def error_body(self, status: int, message: str, code: str) -> dict[str, Any]:
        return anthropic_error(status, message)

    def writer(self, body: dict[str, Any]) -> Writer:
        return MessagesWriter(body)

    def assembler(self, body: dict[str, Any]) -> Assembler:
        return MessagesAssembler(body)

    def ended(self, last: Any) -> bool:
        return isinstance(last, dict) and last.get("type") == "message_stop"

    def upstream_error(self, data: dict[str, Any]) -> str | None:
        kind = data.get("type")
        if kind == "error":
            return _error_message(data.get("error"))
        shape = _MESSAGES_SHAPES.get(kind) if isinstance(kind, str) else None
        if shape is not None and (wrong := _wrong(data, shape)):
            return _malformed(wrong)
        if kind == "content_block_delta" and (wrong := _wrong(data["delta"], _BLOCK_DELTA)):
            return _malformed(f"delta.{wrong}")
        if kind == "message_start" and type(data["message"].get("usage")) not in _DICT:
            return _malformed("message.usage")
        return None


# --------------------------------------------------------------------------
# OpenAI Responses
# --------------------------------------------------------------------------

_RESPONSE_ENDS = ("response.completed", "response.incomplete", "response.failed")


class ResponsesWriter(Writer):
    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.response: dict[str, Any] = {}
        self.seq = -1
        self.items: dict[int, dict[str, Any]] = {}
        self.parts: dict[tuple[int, int], dict[str, Any]] = {}
        self.arguments: dict[int, list[str]] = {}
        self.finished_items: dict[int, dict[str, Any]] = {}
        self.ended = False
        self._error: dict[str, Any] | None = None
        self._failed: list[dict[str, Any]] = []

    def feed(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        kind = data.get("type")
        seq = data.get("sequence_number")
        if isinstance(seq, int):
            self.seq = max(self.seq, seq)
        oi = data.get("output_index", 0)
        if kind in ("response.created", "response.in_progress"):
            self.response = dict(data.get("response") or {})
        elif kind == "response.output_item.added":
            self.items[oi] = dict(data.get("item") or {})
        elif kind == "response.content_part.added":
            part = dict(data.get("part") or {})
            self.parts[(oi, data.get("content_index", 0))] = {
                "item_id": data.get("item_id"),
                "part": part,
                "text": [],
            }
        elif kind in ("response.output_text.delta", "response.refusal.delta"):
            slot = self.parts.get((oi, data.get("content_index", 0)))
            if slot is not None:
                slot["text"].append(data.get("delta") or "")
        elif kind == "response.function_call_arguments.delta":
            self.arguments.setdefault(oi, []).append(data.get("delta") or "")
        elif kind == "response.content_part.done":
            self.parts.pop((oi, data.get("content_index", 0)), None)
        elif kind == "response.output_item.done":
            self.items.pop(oi, None)
            self.finished_items[oi] = dict(data.get("item") or {})
        elif kind in _RESPONSE_ENDS:
            self.ended = True
        self.sent += 1
        return [data]

    @property
    def complete(self) -> bool:
        return self.ended

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        return {"type": kind, **fields, "sequence_number": self.seq}

    def _created(self) -> list[dict[str, Any]]:
        """``response.created``, unless the upstream's went out already."""
        if self.response:
            return []
        self.response = {
            "id": "resp_gateway",
            "object": "response",
            "created_at": 0,
            "status": "in_progress",
            "model": self.body.get("model") or "",
            "output": [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
        }
        return [self._event("response.created", response=dict(self.response))]

    def cut(self, usage: Usage) -> list[dict[str, Any]]:
        out = self._created()
        closed: dict[int, list[dict[str, Any]]] = {}
        for (oi, ci), slot in sorted(self.parts.items()):
            text = "".join(slot["text"])
            part = dict(slot["part"])
            where = {"item_id": slot["item_id"], "output_index": oi, "content_index": ci}
            if part.get("type") == "refusal":
                part["refusal"] = text
                out.append(self._event("response.refusal.done", **where, refusal=text))
            else:
                part["text"] = text
                out.append(
                    self._event("response.output_text.done", **where, text=text, logprobs=[])
                )
            out.append(self._event("response.content_part.done", **where, part=part))
            closed.setdefault(oi, []).append(part)
        self.parts = {}
        for oi, item in sorted(self.items.items()):
            item = dict(item)
            if oi in closed:
                item["content"] = [*(item.get("content") or []), *closed[oi]]
            if item.get("type") == "function_call":
                args = "".join(self.arguments.get(oi, []))
                item["arguments"] = args
                out.append(
                    self._event(
                        "response.function_call_arguments.done",
                        item_id=item.get("id"),
                        output_index=oi,
                        arguments=args,
                    )
                )
            if "status" in item:
                item["status"] = "incomplete"
            out.append(self._event("response.output_item.done", output_index=oi, item=item))
            self.finished_items[oi] = item
        self.items = {}
        final = {
            **self.response,
            "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"},
            "output": [self.finished_items[i] for i in sorted(self.finished_items)],
            "usage": {
                "input_tokens": usage.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": usage.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage.total_tokens,
            },
        }
        out.append(self._event("response.incomplete", response=final))
        self.ended = True
        self.sent += len(out)
        return out

    def error(self, status: int, message: str, code: str) -> dict[str, Any]:
        """The ``error`` event; :meth:`encode` follows it with ``response.failed``.

        The openai SDK yields an ``error`` event rather than raising it; the
        API ends a failed response with ``response.failed`` (status ``failed``,
        ``error`` set), which the SDK's stream helpers take as the end.
        """
        event = self._event("error", code=code, message=message, param=None)
        created = self._created()
        response = {
            **self.response,
            "status": "failed",
            "error": {"code": code, "message": message},
            "incomplete_details": None,
            "output": [self.finished_items[i] for i in sorted(self.finished_items)],
        }
        self._failed = [*created, self._event("response.failed", response=response)]
        self._error = event
        self.ended = True
        return event

    def encode(self, data: dict[str, Any]) -> bytes:
        if data is self._error:
            return b"".join(map(_sse_event, [data, *self._failed]))
        return _sse_event(data)

    def _frame(self, data: dict[str, Any], raw: bytes) -> bytes:
        return _sse_event_raw(data, raw)


class ResponsesAssembler(Assembler):
    def __init__(self, body: dict[str, Any]) -> None:
        self.request = body
        self.final: dict[str, Any] = {}

    def add(self, data: dict[str, Any]) -> None:
        if data.get("type") in (*_RESPONSE_ENDS, "response.created"):
            self.final = dict(data.get("response") or {})

    def body(self) -> dict[str, Any]:
        return self.final


_RESPONSES_SHAPE: _Shape = {
    "response": _DICT,
    "item": _DICT,
    "part": _DICT,
    "delta": _STR,
    "output_index": _INT,
    "content_index": _INT,
}


class Responses(Wire):
    route = "responses"
    path = "/v1/responses"
    fields = (
        *Wire.fields,
        ("input", (str, list), "a string or a list of items"),
        ("instructions", (str,), "a string"),
    )

    def texts(self, body: dict[str, Any]) -> list[TextRef]:
        # ``prompt``: a stored prompt's variables, substituted into what the model reads.
        refs = _field_refs(body, "instructions", "input", "prompt")
        return refs + _description_refs(body, "tools")

    def error_body(self, status: int, message: str, code: str) -> dict[str, Any]:
        return _openai_error(status, message, code)

    def writer(self, body: dict[str, Any]) -> Writer:
        return ResponsesWriter(body)

    def assembler(self, body: dict[str, Any]) -> Assembler:
        return ResponsesAssembler(body)

    def ended(self, last: Any) -> bool:
        return isinstance(last, dict) and last.get("type") in _RESPONSE_ENDS

    def upstream_error(self, data: dict[str, Any]) -> str | None:
        kind = data.get("type")
        if kind == "error":
            error = data.get("error")  # the API's nesting; the SDK's type has it flat
            return _error_message(error) if error is not None else _error_message(data)
        if wrong := _wrong(data, _RESPONSES_SHAPE):
            return _malformed(wrong)
        if kind == "response.failed":
            error = (data.get("response") or {}).get("error")
            return _error_message(error) if error else "the upstream response failed"
        return None


WIRES: tuple[Wire, ...] = (Chat(), Responses(), Messages())
