"""What the fault suite sends and which faults it injects, all from one seed.

Traffic: Meta's deliveries as they come — several messages and statuses per POST, several
business numbers in one POST, a conversation's messages out of order across POSTs — and
duplicated the ways Meta duplicates them: the same POST twice in a row, the same message in two
POSTs, the same POST again minutes later (past SQS's 5-minute deduplication window).

Faults are decided by hashing the seed with what a call is about (the message, the how-many-th
call for it), never by the order threads happen to run in: the same message meets the same
faults in every run, whichever conversation the consumer's threads take first.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

BusinessNumber = tuple[str, str]  # phone_number_id, display number
BUSINESS_NUMBERS: Final[tuple[BusinessNumber, ...]] = (
    ("110000000000001", "15550000001"),
    ("110000000000002", "15550000002"),
    ("110000000000003", "15550000003"),
)
WABA_ID: Final = "220000000000001"
# Texts the shipped reply rules answer with a threaded message (never a reaction): every inbound
# message of the suite expects exactly one reply.
TEXTS: Final = ("hello", "menu", "where is my order?", "hola", "can someone call me back?")
STATUS_VALUES: Final = ("sent", "delivered", "read", "failed")
DUPLICATE_KINDS: Final = ("same_post_twice", "same_message_in_two_posts", "redelivered_later")


def unit(seed: int, *parts: object) -> float:
    """A number in [0, 1) fixed by the seed and `parts` (not by call order)."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True, slots=True)
class Message:
    wamid: str
    number: BusinessNumber
    sender: str
    text: str
    sequence: int  # position in its conversation

    def document(self, timestamp: int) -> dict[str, Any]:
        return {
            "from": self.sender,
            "id": self.wamid,
            "timestamp": str(timestamp),
            "type": "text",
            "text": {"body": self.text},
        }


PostKind = Literal["first", "same_post_twice", "same_message_in_two_posts", "redelivered_later"]


@dataclass(frozen=True, slots=True)
class Post:
    """One webhook POST, due `at` virtual seconds after the run starts."""

    at: float
    kind: PostKind
    wamids: tuple[str, ...]
    body: bytes


@dataclass
class Traffic:
    posts: list[Post] = field(default_factory=list)
    messages: dict[str, Message] = field(default_factory=dict)  # wamid -> message

    def duplicates(self) -> dict[str, int]:
        counts = dict.fromkeys(DUPLICATE_KINDS, 0)
        for post in self.posts:
            if post.kind != "first":
                counts[post.kind] += 1
        return counts


def _document(number: BusinessNumber, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": number[1], "phone_number_id": number[0]},
            **value,
        },
    }


def webhook_body(
    messages: Sequence[tuple[Message, int]],
    statuses: int,
    rng: random.Random,
    *,
    stamp: int | None = None,
) -> bytes:
    """Meta's JSON for one POST (each message with its timestamp): a change per business
    number, the statuses in a change of their own, spread over one or two entries."""
    by_number: dict[BusinessNumber, list[tuple[Message, int]]] = {}
    for message, timestamp in messages:
        by_number.setdefault(message.number, []).append((message, timestamp))
    changes = [
        _document(
            number,
            {
                "contacts": [
                    {"profile": {"name": f"User {sender[-4:]}"}, "wa_id": sender}
                    for sender in sorted({m.sender for m, _ in group})
                ],
                "messages": [m.document(timestamp) for m, timestamp in group],
            },
        )
        for number, group in by_number.items()
    ]
    if statuses:
        stamp = max((timestamp for _, timestamp in messages), default=stamp or 0)
        changes.append(
            _document(
                BUSINESS_NUMBERS[rng.randrange(len(BUSINESS_NUMBERS))],
                {
                    "statuses": [
                        {
                            "id": f"wamid.OUT{rng.getrandbits(64):016x}=",
                            "status": rng.choice(STATUS_VALUES),
                            "timestamp": str(stamp),
                            "recipient_id": f"1650{rng.randrange(10**7):07d}",
                        }
                        for _ in range(statuses)
                    ]
                },
            )
        )
    rng.shuffle(changes)  # statuses may come before the messages
    entries = 1 if len(changes) < 2 or rng.random() < 0.5 else 2
    document = {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": changes[i::entries]} for i in range(entries)],
    }
    return json.dumps(document, separators=(",", ":")).encode()


def traffic(
    seed: int,
    *,
    start: float,
    conversations: int,
    messages: int,
    status_posts: int,
    ticks: int,
    tick_seconds: float,
) -> Traffic:
    """`messages` inbound messages from `conversations` (number, sender) pairs in POSTs of one
    to four messages, and `status_posts` POSTs of statuses only (Meta's sent / delivered / read
    for replies), arriving over `ticks` moments `tick_seconds` apart from `start` (epoch
    seconds); a few of the message POSTs duplicated."""
    rng = random.Random(seed)
    pairs = [
        (BUSINESS_NUMBERS[index % len(BUSINESS_NUMBERS)], f"1650{5550000 + index:07d}")
        for index in range(conversations)
    ]
    sequence: dict[tuple[BusinessNumber, str], int] = {}
    pending: list[Message] = []
    for index in range(messages):
        number, sender = pairs[rng.randrange(len(pairs))]
        position = sequence.get((number, sender), 0)
        sequence[(number, sender)] = position + 1
        pending.append(
            Message(
                wamid=f"wamid.FAULTS{seed:04d}{index:06d}{rng.getrandbits(48):012x}=",
                number=number,
                sender=sender,
                text=rng.choice(TEXTS),
                sequence=position,
            )
        )
    # Out of order: now and then a conversation's two consecutive messages trade places.
    for index in range(len(pending) - 1):
        if rng.random() < 0.04:
            pending[index], pending[index + 1] = pending[index + 1], pending[index]
    sizes: list[int] = []
    while sum(sizes) < len(pending):
        sizes.append(min(len(pending) - sum(sizes), rng.choice((1, 1, 1, 2, 2, 3, 4))))
    moments = sorted(tick_seconds * rng.randrange(ticks) for _ in sizes)
    stamped: dict[str, int] = {}  # wamid -> Meta's timestamp (when the user sent it)
    posts: list[Post] = []
    cursor = 0
    for size, at in zip(sizes, moments, strict=True):
        group = pending[cursor : cursor + size]
        cursor += size
        for message in group:
            stamped[message.wamid] = int(start + at)
        body = webhook_body(
            [(m, stamped[m.wamid]) for m in group], rng.choice((0, 0, 0, 1, 2)), rng
        )
        posts.append(Post(at=at, kind="first", wamids=tuple(m.wamid for m in group), body=body))
    for _ in range(status_posts):
        at = tick_seconds * rng.randrange(ticks)
        body = webhook_body([], rng.choice((1, 1, 2, 3)), rng, stamp=int(start + at))
        posts.append(Post(at=at, kind="first", wamids=(), body=body))
    posts.sort(key=lambda post: post.at)  # stable: a conversation's POSTs keep their order
    by_wamid = {message.wamid: message for message in pending}
    duplicates: list[Post] = []
    for index, post in enumerate(posts):
        if not post.wamids:
            continue
        draw = rng.random()
        if draw < 0.03:
            duplicates.append(Post(post.at, "same_post_twice", post.wamids, post.body))
        elif draw < 0.06:
            # One of its messages again, beside one of an earlier POST, a few ticks later.
            later = post.at + tick_seconds * rng.randrange(1, 20)
            earlier = next(
                (p.wamids[-1] for p in reversed(posts[: rng.randrange(index + 1) + 1]) if p.wamids),
                post.wamids[-1],
            )
            pair = [(by_wamid[w], stamped[w]) for w in dict.fromkeys((post.wamids[0], earlier))]
            duplicates.append(
                Post(
                    later,
                    "same_message_in_two_posts",
                    tuple(m.wamid for m, _ in pair),
                    webhook_body(pair, 0, rng),
                )
            )
        elif draw < 0.08:
            # Meta again, past SQS's five-minute deduplication window.
            later = post.at + rng.uniform(6 * 60, 30 * 60)
            duplicates.append(Post(later, "redelivered_later", post.wamids, post.body))
    return Traffic(posts=sorted([*posts, *duplicates], key=lambda post: post.at), messages=by_wamid)


# --- faults ---------------------------------------------------------------------------------


Fate = Literal["normal", "doomed", "refused"]


def fate(seed: int, wamid: str) -> Fate:
    """A few messages meet a Graph API that never takes their reply (5xx until their own attempts
    run out: the DLQ), a few a permanent refusal (131026); the rest random faults."""
    draw = unit(seed, "fate", wamid)
    if draw < 0.01:
        return "doomed"
    if draw < 0.02:
        return "refused"
    return "normal"


@dataclass(frozen=True, slots=True)
class Kill:
    point: str | None  # a consumer_process.KILL_POINTS name, or None with `after_seconds`
    nth: int = 1
    after_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        if self.after_seconds is not None:
            return {"after_seconds": self.after_seconds}
        return {"point": self.point, "nth": self.nth}

    @property
    def label(self) -> str:
        return "timer" if self.after_seconds is not None else str(self.point)


# Points an invocation passes at most once (one visibility call per batch) or seldom (a dead
# letter): only their first passage is ever there to die at.
ONCE_PER_INVOCATION: Final = frozenset({"after_visibility_change", "after_dead_letter"})


def kills(
    seed: int, points: Sequence[str], *, weights: Mapping[str, int], timers: int
) -> list[Kill]:
    """Where the consumer dies, in order: at every point (as many times as its weight, else
    once) and `timers` times a few milliseconds into an invocation, wherever the code then is;
    the order shuffled, the `nth` passage of the point (1-3) drawn."""
    rng = random.Random(f"{seed}:kills")
    plan = [
        Kill(point=point, nth=1 if point in ONCE_PER_INVOCATION else rng.choice((1, 1, 2, 3)))
        for point in points
        for _ in range(weights.get(point, 1))
    ]
    plan += [
        Kill(point=None, after_seconds=round(rng.uniform(0.005, 0.08), 3)) for _ in range(timers)
    ]
    rng.shuffle(plan)
    return plan
