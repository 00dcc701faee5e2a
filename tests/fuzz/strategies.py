"""Hypothesis strategies for the fuzz suites: JSON values in and out of the webhook's shape,
hostile bodies, mutations of valid payloads, signatures right and wrong, headers in every case."""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from hypothesis import strategies as st

from functions.domain.ingest.signature import sign
from tests.conftest import ACCESS_TOKEN, APP_SECRET, VERIFY_TOKEN
from tests.events import builders
from tests.fuzz.harness import WHATSAPP_OBJECT, fixture_bodies

SIGNATURE_HEADER = "X-Hub-Signature-256"

# Names and values of Meta's payloads, so that random documents reach deep into the parser.
WEBHOOK_KEYS = (
    "object",
    "entry",
    "id",
    "changes",
    "field",
    "value",
    "messaging_product",
    "metadata",
    "display_phone_number",
    "phone_number_id",
    "contacts",
    "profile",
    "name",
    "wa_id",
    "user_id",
    "username",
    "parent_user_id",
    "messages",
    "from",
    "from_user_id",
    "timestamp",
    "type",
    "text",
    "body",
    "statuses",
    "status",
    "recipient_id",
    "recipient_user_id",
    "errors",
    "code",
    "title",
    "message",
    "error_data",
    "details",
    "context",
    "forwarded",
    "referral",
    "image",
    "mime_type",
    "sha256",
    "caption",
    "interactive",
    "button_reply",
    "list_reply",
    "nfm_reply",
    "response_json",
    "reaction",
    "message_id",
    "emoji",
    "location",
    "latitude",
    "longitude",
    "system",
    "previous_user_id",
    "order",
    "product_items",
    "button",
    "payload",
    "unsupported",
    "contacts",
    "document",
    "filename",
    "sticker",
    "audio",
    "video",
)
WEBHOOK_VALUES = (
    WHATSAPP_OBJECT,
    "messages",
    "message_template_status_update",
    "whatsapp",
    "text",
    "image",
    "interactive",
    "button_reply",
    "reaction",
    "system",
    "unsupported",
    "contacts",
    "button",
    "order",
    "location",
    "delivered",
    "read",
    "failed",
    "user_changed_number",
    "wamid.FUZZ=",
    "106540352242922",
    "16505551234",
    "US.13491208655302741918",
    "1749416383",
    "",
    " ",
    "\u0000",
    "\ud800",
    "\udfff",
    "\ufeff",
    "\U0001f44d",
    "wamid.\n",
    "a\nb",
)

# Text in any script; sometimes with lone surrogates (what a `\ud800` escape decodes to).
any_text = st.one_of(
    st.text(max_size=20),
    st.text(st.characters(exclude_categories=()), max_size=8),
    st.sampled_from(WEBHOOK_VALUES),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    any_text,
)


def json_values(
    *, keys: st.SearchStrategy[str] | None = None, max_leaves: int = 25
) -> st.SearchStrategy[Any]:
    """Any JSON value (as `json.loads` returns them), keys from `keys` or any text."""
    key_strategy = keys if keys is not None else st.one_of(st.sampled_from(WEBHOOK_KEYS), any_text)
    return st.recursive(
        json_scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(key_strategy, children, max_size=5),
        ),
        max_leaves=max_leaves,
    )


# Built once: a strategy is validated on its first draw, and these are drawn thousands of times.
small_json = {leaves: json_values(max_leaves=leaves) for leaves in (2, 3, 4, 6)}
any_json = json_values()


# --- valid deliveries -----------------------------------------------------------------------------

MESSAGE_TYPES = (
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "button",
    "reaction",
    "order",
    "system",
    "unsupported",
    "brand_new_type",
)


BSUIDS = {
    "16505551234": "US.13491208655302741918",
    "447700900123": "GB.20394857610293847561",
    "5511987654321": "BR.99887766554433221100",
}


@st.composite
def synthetic_message(draw: st.DrawFn, wamid: str) -> dict[str, Any]:
    """A `messages[]` object of any type (Meta's content, or anything under the type's key),
    from a phone, a BSUID, or both."""
    message_type = draw(st.sampled_from(MESSAGE_TYPES))
    phone = draw(st.sampled_from(sorted(BSUIDS)))
    message = builders.message(message_type, wamid=wamid, sender=phone)
    if draw(st.integers(0, 3)) == 0 and message_type != "contacts":
        message[message_type] = draw(small_json[4])
    sender = draw(st.sampled_from(("phone", "bsuid", "both")))
    if sender == "bsuid":
        del message["from"]
    if sender != "phone":
        message["from_user_id"] = BSUIDS[phone]
    if draw(st.booleans()):
        message["context"] = {"from": phone, "id": "wamid.EARLIER="}
    return message


def _contacts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One `contacts[]` object per sender, as Meta writes them."""
    contacts: dict[tuple[Any, Any], dict[str, Any]] = {}
    for message in messages:
        contact: dict[str, Any] = {"profile": {"name": "Sheena"}}
        if "from" in message:
            contact["wa_id"] = message["from"]
        if "from_user_id" in message:
            contact["user_id"] = message["from_user_id"]
        contacts[(message.get("from"), message.get("from_user_id"))] = contact
    return list(contacts.values())


@st.composite
def synthetic_delivery(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed delivery: several entries, numbers, changes, messages and statuses."""
    serial = iter(range(10_000))
    entries = []
    for _ in range(draw(st.integers(1, 3))):
        changes = []
        for _ in range(draw(st.integers(1, 3))):
            number = draw(st.sampled_from(("106540352242922", "277321005464405")))
            value: dict[str, Any] = {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": number},
            }
            messages = [
                draw(synthetic_message(f"wamid.FUZZ{next(serial):04d}="))
                for _ in range(draw(st.integers(0, 4)))
            ]
            if messages:
                value["contacts"] = _contacts(messages)
                value["messages"] = messages
            if draw(st.booleans()):
                value["statuses"] = [
                    {
                        "id": f"wamid.STATUS{next(serial):04d}=",
                        "status": draw(st.sampled_from(("sent", "delivered", "read", "failed"))),
                        "timestamp": "1750263773",
                        "recipient_id": "16505551234",
                        "errors": [{"code": 131047, "title": "Re-engagement message"}],
                    }
                ]
            if draw(st.booleans()):
                value["errors"] = [{"code": 131000, "title": "Something went wrong"}]
            field = draw(st.sampled_from(("messages", "messages", "messages", "account_update")))
            changes.append({"field": field, "value": value})
        entries.append({"id": "102290129340398", "changes": changes})
    return {"object": WHATSAPP_OBJECT, "entry": entries}


FIXTURE_DOCUMENTS = [json.loads(body) for body in fixture_bodies()]

valid_deliveries: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(FIXTURE_DOCUMENTS).map(copy.deepcopy), synthetic_delivery()
)


# --- mutations ------------------------------------------------------------------------------------

Path = tuple[str | int, ...]
T = TypeVar("T")


class Draw(Protocol):
    """What the helpers below draw with: a composite's `draw` or a test's `data.draw`."""

    def __call__(self, strategy: st.SearchStrategy[T], /) -> T: ...


def _paths(node: Any, path: Path = ()) -> list[Path]:
    found: list[Path] = []
    if isinstance(node, dict):
        for key, child in node.items():
            found.append((*path, key))
            found.extend(_paths(child, (*path, key)))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found.append((*path, index))
            found.extend(_paths(child, (*path, index)))
    return found


def _parent(document: Any, path: Path) -> Any:
    node = document
    for step in path[:-1]:
        node = node[step]
    return node


def _retyped(value: Any) -> Any:
    """The same content under another JSON type: what a careless producer would send."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return int(value) if value.isascii() and value.isdigit() else [value]
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return value[0] if value else {}
    return ""


OPERATIONS = ("delete", "replace", "retype", "null", "duplicate", "add_key", "rename", "wrap")


def mutate(draw: Draw, document: Any) -> Any:
    """`document` after 1-5 random edits anywhere in it."""
    document = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 5))):
        paths = _paths(document)
        if not paths:
            break
        # Indices, not sampled_from(paths): integers(0, n) is cached, a fresh strategy is not.
        path = paths[draw(st.integers(0, len(paths) - 1))]
        _edit(draw, _parent(document, path), path[-1], draw(st.sampled_from(OPERATIONS)))
    return document


def _edit(draw: Draw, parent: Any, key: Any, operation: str) -> None:
    if operation == "delete":
        del parent[key]
    elif operation == "replace":
        parent[key] = draw(small_json[6])
    elif operation == "retype":
        parent[key] = _retyped(parent[key])
    elif operation == "null":
        parent[key] = None
    elif operation == "wrap":
        parent[key] = [parent[key]] if draw(st.booleans()) else {"value": parent[key]}
    elif operation == "duplicate":
        if isinstance(parent, list):
            parent.insert(draw(st.integers(0, len(parent))), copy.deepcopy(parent[key]))
        else:  # the same value under a sibling key (e.g. `messages` also as `statuses`)
            parent[draw(st.sampled_from(WEBHOOK_KEYS))] = copy.deepcopy(parent[key])
    elif operation == "add_key":
        target = parent[key] if isinstance(parent[key], dict) else parent
        if isinstance(target, dict):
            target[draw(st.sampled_from(WEBHOOK_KEYS))] = draw(small_json[4])
    elif operation == "rename" and isinstance(parent, dict):
        parent[draw(st.sampled_from(WEBHOOK_KEYS))] = parent.pop(key)


@st.composite
def _mutated_deliveries(draw: st.DrawFn) -> Any:
    return mutate(draw, draw(valid_deliveries))


# Built once (a flatmap would build and validate a new strategy for every example).
mutated_deliveries: st.SearchStrategy[Any] = _mutated_deliveries()


def serialize(draw: Draw, document: Any) -> bytes:
    """The document as some producer might write it: compact or spaced, escaped or raw UTF-8,
    sometimes with a duplicate key at the front of an object (the later one wins)."""
    text = json.dumps(
        document,
        ensure_ascii=draw(st.booleans()),
        separators=draw(st.sampled_from(((",", ":"), (", ", ": ")))),
        indent=draw(st.sampled_from((None, None, 2))),
    )
    if draw(st.booleans()):
        openings = [index for index, char in enumerate(text) if char == "{"]
        if openings:
            at = draw(st.sampled_from(openings)) + 1
            duplicate = json.dumps(draw(st.sampled_from(WEBHOOK_KEYS)))
            shadowed = json.dumps(draw(small_json[3]))
            closing = "" if text[at:].lstrip().startswith("}") else ","
            text = f"{text[:at]}{duplicate}:{shadowed}{closing}{text[at:]}"
    return text.encode("utf-8", "surrogatepass")


@st.composite
def _bodies(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> bytes:
    return serialize(draw, draw(documents))


valid_bodies = _bodies(valid_deliveries)
mutated_bodies = _bodies(mutated_deliveries)


# --- hostile bodies -------------------------------------------------------------------------------

FIXTURE_BODIES = fixture_bodies()
TEXT_FIXTURE = next(b for b in FIXTURE_BODIES if b'"type":"text"' in b)
DEPTHS = (1_000, 10_000, 100_000)


def deep(depth: int, kind: str) -> bytes:
    """JSON nested `depth` levels, balanced or not, bare or inside a webhook's message."""
    if kind == "arrays":
        return b"[" * depth + b"]" * depth
    if kind == "objects":
        return b'{"a":' * depth + b"1" + b"}" * depth
    if kind == "unbalanced":
        return b"[" * depth
    nested = b'{"a":' * depth + b"1" + b"}" * depth
    if kind == "in_message":
        return TEXT_FIXTURE.replace(b'"text":{', b'"text":{"deep":' + nested + b",", 1)
    return TEXT_FIXTURE.replace(b'"entry":[', b'"entry":[' + nested + b",", 1)  # "in_entry"


def _replace_first(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    return lambda body: body.replace(old, new, 1)


_WEIRD_EDITS: tuple[Callable[[bytes], bytes], ...] = (
    _replace_first(b'"timestamp":"1749416383"', b'"timestamp":NaN'),
    _replace_first(b'"timestamp":"1749416383"', b'"timestamp":Infinity'),
    _replace_first(b'"timestamp":"1749416383"', b'"timestamp":-Infinity'),
    _replace_first(b'"timestamp":"1749416383"', b'"timestamp":1e400'),
    _replace_first(b'"timestamp":"1749416383"', b'"timestamp":' + b"9" * 5000),
    _replace_first(b'"id":"wamid.', b'"id":"\\ud800wamid.'),
    _replace_first(b'"id":"wamid.', b'"id":"wamid.\\udfff'),
    _replace_first(b'"from":"', b'"from":"\\ud83d'),
    _replace_first(b'"phone_number_id":"', b'"phone_number_id":"\\udc00'),
    _replace_first(b'"body":"', b'"body":"\\ud800\\u0000'),
    _replace_first(b'"id":"wamid.', b'"id":"\xff\xfewamid.'),
    _replace_first(b'"body":"', b'"body":"\xc3\x28\xed\xa0\x80'),
    _replace_first(b'"object":', b'"object":"x","object":'),
    _replace_first(b'"messages":[', b'"messages":null,"messages":['),
    _replace_first(b'"entry":[', b'"entry":[],"entry":['),
    _replace_first(b'"id":"wamid.', b'"id":"wamid.\\n'),
    lambda body: body.replace(b'"}', b'\\n"}', 1),
    lambda body: b"\xef\xbb\xbf" + body,
    lambda body: body.decode("utf-8").encode("utf-16"),
    lambda body: body + b"\n",
    lambda body: body + b"{}",
    lambda body: body[: len(body) // 2],
    lambda body: b"  \t\r\n" + body,
)


@st.composite
def weird_fixture_body(draw: st.DrawFn) -> bytes:
    """A stored webhook edited the way a broken or hostile producer would."""
    body = draw(st.sampled_from(FIXTURE_BODIES))
    for edit in draw(st.lists(st.sampled_from(_WEIRD_EDITS), min_size=1, max_size=3)):
        try:
            body = edit(body)
        except UnicodeDecodeError:
            continue
    return body


hostile_bodies: st.SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=600),
    st.text(st.characters(exclude_categories=()), max_size=200).map(
        lambda text: text.encode("utf-8", "surrogatepass")
    ),
    any_json.map(lambda value: json.dumps(value).encode("ascii")),
    st.sampled_from(FIXTURE_BODIES),
    weird_fixture_body(),
    mutated_bodies,
    st.builds(
        deep,
        st.sampled_from(DEPTHS),
        st.sampled_from(("arrays", "objects", "unbalanced", "in_message", "in_entry")),
    ),
    st.sampled_from(
        (
            b"",
            b"null",
            b"[]",
            b"{}",
            b"1",
            b'"x"',
            b"NaN",
            b"Infinity",
            b"-Infinity",
            b"true",
            b'{"a":NaN}',
            b"{,}",
            b"{'a':1}",
            b"\x00",
            b"\xff",
            b"\xed\xa0\x80",
            b"1e400",
        )
    ),
)


# --- signatures and headers -----------------------------------------------------------------------

WRONG_KEYS = (
    VERIFY_TOKEN,
    ACCESS_TOKEN,
    APP_SECRET.upper(),
    APP_SECRET + "x",
    APP_SECRET[:-1],
    " ",
)


def forged_signature(draw: Draw, body: bytes) -> str:  # noqa: PLR0911 - one per kind
    """A header value that is NOT the HMAC-SHA256 of `body` under the app secret."""
    genuine = sign(body, APP_SECRET)
    digest = genuine.removeprefix("sha256=")
    kind = draw(st.integers(0, 11))
    if kind == 0:
        return draw(st.text(st.characters(exclude_categories=()), max_size=80))
    if kind == 1:
        return "sha256=" + draw(st.text("0123456789abcdef", min_size=64, max_size=64))
    if kind == 2:
        return sign(body, draw(st.sampled_from(WRONG_KEYS)))
    if kind == 3:  # signs other bytes: one more, one less, one changed
        other = draw(st.sampled_from((body + b" ", body[:-1], body + b"\n", b"x" + body)))
        return sign(other, APP_SECRET)
    if kind == 4:  # the old SHA-1 header's value
        return "sha1=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha1).hexdigest()
    if kind == 5:
        return (
            draw(st.sampled_from(("", "sha512=", "sha256 =", "=", "sha256:", "sha-256="))) + digest
        )
    if kind == 6:
        return genuine[:-1]
    if kind == 7:
        return genuine + draw(st.sampled_from(("0", "a", "\u0000", ",sha256=" + digest, "\ud800")))
    if kind == 8:  # the genuine digest with one hex digit changed
        at = draw(st.integers(0, 63))
        flipped = "0" if digest[at] != "0" else "1"
        return "sha256=" + digest[:at] + flipped + digest[at + 1 :]
    if kind == 9:
        return "sha256=" + hashlib.sha256(body).hexdigest()  # no key at all
    if kind == 10:
        return sign(body, APP_SECRET).replace("sha256=", "sha256=sha256=")
    return "sha256=" + digest.encode().hex()[:64]


@functools.cache
def random_case(name: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda upper: "".join(
            c.upper() if u else c.lower() for c, u in zip(name, upper, strict=True)
        )
    )


NOISE_HEADERS = {
    "Content-Type": "application/json",
    "User-Agent": "facebookexternalua",
    "X-Hub-Signature": "sha1=0000",
    "X-Forwarded-For": "173.252.88.1",
}


def header_layout(
    draw: Draw, values: list[str]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(headers, multiValueHeaders) carrying each of `values` as the signature header, under a
    name in any case, in either map or both; with ordinary headers around them."""
    headers: dict[str, Any] = {}
    multi: dict[str, list[Any]] = {}
    for name, value in NOISE_HEADERS.items():
        if draw(st.booleans()):
            headers[name] = value
            multi[name] = [value]
    for value in values:
        name = draw(random_case(SIGNATURE_HEADER))
        where = draw(st.sampled_from(("single", "multi", "both")))
        if where in ("single", "both"):
            headers[name] = value
        if where in ("multi", "both"):
            multi.setdefault(name, []).append(value)
    return (headers or draw(st.sampled_from((None, {})))), (multi or None)
