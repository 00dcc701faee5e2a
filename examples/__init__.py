"""Reply handlers to start from (docs/reply-handler.md): `echo` and `order_status`. Deploy one
with `-c replyHandler=examples.echo:handle`; the stack ships this package beside `functions/`."""
