#!/usr/bin/env python3
"""A stdio MCP server, standard library only, whose tools answer `tools/call` in ways the hub must
survive: for the hub's own wire channel (`actors/upstream/rawcall.py`). 2025-11-25 handshake era only.

Tools (each answers as its name says):
  echo {text}       a normal result, echoing the text.
  bad_content       a result whose `content` is a string, not a list.
  bad_structured    a result whose `structuredContent` is a list, not an object.
  input             a 2026-07-28 `input_required` result.
  neither           an answer with neither `result` nor `error`.
  refuse            a JSON-RPC error -32000 "no way".
  wrong_args        a JSON-RPC error -32602 "wrong arguments".
  mention           first a log message and a stray answer to an id this server never got, both
                    carrying the hub's id prefix, then a normal result whose text carries it too.
  wait              never answers; when a `notifications/cancelled` names its request it writes
                    "cancelled <id>" to stderr.
  log {text}        a log message (level warning) before the normal result.
  region {region}   answers the region; its schema mirrors `region` into the `Mcp-Param-Region`
                    header of 2026-07-28 HTTP requests (`x-mcp-header`).
"""

import json
import sys

TOOLS = [
    "echo",
    "bad_content",
    "bad_structured",
    "input",
    "neither",
    "refuse",
    "wrong_args",
    "mention",
    "wait",
    "log",
]
REGION_SCHEMA = {
    "type": "object",
    "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
    "required": ["region"],
}


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def result(request_id, value):
    send({"jsonrpc": "2.0", "id": request_id, "result": value})


def text(value):
    return {"content": [{"type": "text", "text": value}], "isError": False}


def call(request_id, name, arguments):
    if name == "echo":
        result(
            request_id,
            {**text(str(arguments.get("text", ""))), "structuredContent": {"text": arguments.get("text")}},
        )
    elif name == "bad_content":
        result(request_id, {"content": "nope"})
    elif name == "bad_structured":
        result(request_id, {**text("x"), "structuredContent": [1, 2]})
    elif name == "input":
        result(request_id, {"resultType": "input_required", "inputRequests": {}})
    elif name == "neither":
        send({"jsonrpc": "2.0", "id": request_id})
    elif name == "refuse":
        send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32000, "message": "no way"}})
    elif name == "wrong_args":
        send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32602, "message": "wrong arguments"}})
    elif name == "mention":
        log("info", 'a log that says "hub-1"')
        result("hub-999999", text("a stray answer"))
        result(request_id, text('"hub-2" is just text'))
    elif name == "log":
        log("warning", str(arguments.get("text", "")))
        result(request_id, text("logged"))
    elif name == "wait":
        pass
    elif name == "region":
        result(request_id, text(str(arguments.get("region"))))
    else:
        send(
            {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32602, "message": f"unknown tool {name}"}}
        )


def log(level, data):
    send({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": level, "data": data}})


def handle(message):
    method, request_id, params = message.get("method"), message.get("id"), message.get("params") or {}
    if method == "notifications/cancelled":
        print(f"cancelled {params.get('requestId')}", file=sys.stderr, flush=True)
    elif request_id is None:
        return
    elif method == "initialize":
        result(
            request_id,
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {"tools": {}, "logging": {}},
                "serverInfo": {"name": "wireserver", "version": "1.0.0"},
            },
        )
    elif method in ("ping", "logging/setLevel"):
        result(request_id, {})
    elif method == "tools/list":
        schema = {"type": "object"}
        tools = [{"name": name, "inputSchema": schema} for name in TOOLS]
        result(request_id, {"tools": [*tools, {"name": "region", "inputSchema": REGION_SCHEMA}]})
    elif method == "tools/call":
        call(request_id, params.get("name"), params.get("arguments") or {})
    else:
        send(
            {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": f"no method {method}"}}
        )


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
