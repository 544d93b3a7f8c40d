"""The agent wire protocol, shared by service (the agent and its terminal client) and gui.

JSON-RPC 2.0, one message per line, over a Unix socket. Pure data: no sockets, no asyncio
and no Qt, and it imports on Python 3.10. One module per idea:

- ``codes``: protocol version, limits, error codes;
- ``framing``: encoding one frame, splitting a byte stream into lines;
- ``messages``: envelopes, their parsing, and the builders of replies and notifications;
- ``methods``: each method's parameter schema, ``validate_params``, the hello reply
  and the version check at hello;
- ``events``: job events (and which end a job), telemetry and topics pushed by the agent;
- ``catalogue``: the self-describing metrics;
- ``address``: the default socket locations and the ssh forwarding argv.

The per-client outbound queue is the server's business and lives in service.
"""
