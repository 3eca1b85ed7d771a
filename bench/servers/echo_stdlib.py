#!/usr/bin/env python3
"""A minimal conformant MCP server over stdio, standard library only: one tool, `echo`.

Speaks the 2025-11-25 handshake era (`initialize`, `notifications/initialized`, `ping`,
`tools/list`, `tools/call`); answers -32601 to anything else, including `server/discover`, so
a client in `auto` mode falls back to `initialize` at once. Starts in tens of milliseconds and
a few MB of memory, for scale benchmarks where the SDK's ~1 s import would dominate.
"""

import json
import sys

PROTOCOL = "2025-11-25"
ECHO = {
    "name": "echo",
    "description": "Return the text it is given.",
    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}


def answer(request_id, result=None, error=None):
    message = {"jsonrpc": "2.0", "id": request_id}
    if error is not None:
        message["error"] = error
    else:
        message["result"] = result
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def handle(message):
    method, request_id = message.get("method"), message.get("id")
    if request_id is None:
        return  # a notification
    params = message.get("params") or {}
    if method == "initialize":
        answer(
            request_id,
            {
                "protocolVersion": PROTOCOL,
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": {"name": "echo-stdlib", "version": "1.0.0"},
            },
        )
    elif method == "ping":
        answer(request_id, {})
    elif method == "tools/list":
        answer(request_id, {"tools": [ECHO]})
    elif method == "tools/call" and params.get("name") == "echo":
        text = str((params.get("arguments") or {}).get("text", ""))
        answer(request_id, {"content": [{"type": "text", "text": text}], "isError": False})
    elif method == "tools/call":
        answer(request_id, error={"code": -32602, "message": f"unknown tool {params.get('name')!r}"})
    else:
        answer(request_id, error={"code": -32601, "message": f"method not found: {method}"})


def main():
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict):
            handle(message)


if __name__ == "__main__":
    main()
