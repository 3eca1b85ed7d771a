"""The upstream transports: how the hub reaches an MCP server, one module per transport.

- `actors.upstream.stdio`: a spawned server's pipes, handed to the SDK as memory streams;
  `actors.upstream.process` spawns, watches and stops its process, `actors.upstream.errlog` is
  its capped stderr log, and `actors.upstream.rawcall` is the hub's own channel for tool calls
  on the same pipes.
- `actors.upstream.remote`: a remote server over Streamable HTTP or SSE, and its liveness pings;
  `actors.upstream.httpcall` is the hub's own channel for tool calls to a Streamable HTTP one
  (over `actors.upstream.http1`, a small keep-alive HTTP/1.1 client, and `actors.upstream.sse`).

`actors.transport` picks one for each start of a server's connection. Everything here runs on
the owning server's loop.
"""
