"""The smallest useful reply handler: say back what the user wrote.

    make run                                        # with REPLY_HANDLER=examples.echo:handle
    make deploy CDK_ARGS="-c alarmEmail=… -c replyHandler=examples.echo:handle"

It sees every message of the conversation — reactions and system messages included — and
decides: a reaction or a system message gets no reply, anything without text gets a polite
refusal. With a burst window on, the messages answered together are echoed in one reply.
"""

from __future__ import annotations

from functions.handler_kit import HandlerEvent, Message, text, text_of

SILENT_TYPES = frozenset({"reaction", "system", "unsupported"})


def handle(event: HandlerEvent) -> Message | None:
    message = event["message"]
    if message.get("type") in SILENT_TYPES:
        return None
    said = [words for words in (text_of(item) for item in event["burst"]) if words]
    if not said:
        return text(f"I can only echo words, and this was a {message.get('type')}.")
    return text("You said: " + " / ".join(said))
