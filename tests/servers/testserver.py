#!/usr/bin/env python3
"""Configurable MCP test server for the hub's integration tests (stdio, ``mcp`` 2.x low-level ``Server``).

Run as a script, as a real subprocess: ``python tests/servers/testserver.py [flags]``.
Stdout carries only the protocol (except with ``--junk-stdout``); logs go to stderr.

Always served:
  tools      echo {text} -> text + structured {"text"}; pid -> text + structured {"pid",
             "pid_namespace"} (its pid namespace, as `readlink /proc/self/ns/pid` says);
             env -> JSON of os.environ as text; sleep {seconds} -> "slept", progress every 0.1 s
             (only if the caller sent a progress token); fail -> is_error result "failed on purpose";
             add {a, b: integer, no other keys} -> text + structured {"sum"};
             log {text} -> sends it as a warning log message to the client, answers "logged".
             The log messages of a call belong to it (``related_request_id``): over Streamable
             HTTP they go on the call's own stream, not the session's GET stream.
             A cancelled sleep writes "sleep cancelled" to stderr.
             Arguments are validated against each tool's input schema (JSON Schema 2020-12); a
             violation is an ``is_error`` tool result. An unknown tool is a JSON-RPC -32602 error.
  resource   test://info (text/plain)
  prompt     greet (argument ``name``, required)

Flags:
  --name NAME           server name reported in serverInfo (default "testserver"); tool names unchanged.
  --tools N             also expose N trivial tools t0..t{N-1} (each returns its own name).
  --crash-after N       after N completed tool calls, the next call runs ``os._exit(3)`` while in flight.
  --exit-at-start       write one line to stderr, exit with code 4 before serving.
  --junk-stdout         write non-JSON lines (and a JSON line that is not JSON-RPC) to stdout before
                        serving, and one junk line on every tool call. The SDK's ``stdio_server`` points
                        fd 1 at stderr while serving, so this mode hands it an explicit writer on the
                        real fd 1 and sends junk through the same lock (junk never tears a frame).
  --flood-stderr        a daemon thread writes about 1 MB/s of lines to stderr while serving.
  --oversized-line      tool oversize: first writes one stdout line of 65 MiB (a log notification:
                        valid JSON, over the hub's 64 MiB line limit), then answers "oversized".
  --flood-notifications once it has answered its first tools/list, writes notifications to stdout
                        as fast as the pipe takes them, forever (batches of log messages, progress
                        of an unknown token and tools/list_changed, between the SDK's own frames:
                        a frame is never torn).
  --hang-init           read stdin forever and never answer (EOF is ignored: keeps sleeping);
                        SIGTERM kills it (default disposition).
  --list-changed        tools add_tool {name} and remove_tool {name} (any tool) change the tool list at
                        runtime and announce it: handshake-era clients get
                        ``notifications/tools/list_changed`` (``ctx.session.send_tool_list_changed``,
                        capability ``tools.listChanged`` true); 2026-07-28 clients get it only on a
                        ``subscriptions/listen`` stream (``Client.listen(tools_list_changed=True)``),
                        via ``InMemorySubscriptionBus`` + ``ListenHandler``; the SDK drops the bare
                        notification on a 2026 connection.
  --read-only-sleep     tool peek {seconds}: as sleep, annotated ``readOnlyHint: true`` (a retry of
                        it does no harm: the cluster's failover tries it again, issue 21)
  --asks                tools that ask the caller mid-call, the 2025-11-25 way (server-to-client
                        requests, which a caller connected in the 2026-07-28 era cannot be sent:
                        with the hub as the caller, add --legacy-only):
                        sample {prompt} -> sampling/createMessage with the prompt, answers
                        "sampled: <the answer's text>"; elicit {message} -> elicitation/create (a
                        form asking for a string "name"), answers "elicited: <action> <content as
                        JSON>"; ask_twice {prompt} -> both, one after the other, each followed by a
                        warning log message ("sampled", "elicited"), answers both lines joined by
                        "; ". A request the client answers with an error makes the tool
                        answer an is_error result "asked, and got an error: <its message>"; a
                        call cancelled while it asks writes "asking cancelled" to stderr.
  --legacy-only         serve only the 2025-11-25 handshake era (SDK ``serve_loop`` instead of the
                        dual-era ``Server.run``): ``server/discover`` answers -32601 at once, so a
                        ``mode="auto"`` client falls back to ``initialize``; any request carrying the
                        2026-07-28 ``_meta`` envelope gets -32600, so a pinned 2026-07-28 client fails.
  --print-env-at-start  first thing: one line on stderr, the whole environment as a JSON object.
  --template            also a resource template test://echo/{text}, whose reads answer {text}.
  --lone-surrogate      answer with lone surrogates: every ``@@lone@@`` in a line the server writes
                        becomes the JSON escape ``\\ud800`` (a lone surrogate once parsed; the SDK itself
                        cannot write one), e.g. echo {"text": "@@lone@@"} or greet {"name": "@@lone@@"}.
  --extras              what the hub relays beyond calls (issue 20): capability ``logging`` with a
                        ``logging/setLevel`` handler that records the level (tool ``level`` answers it,
                        or "none"; log messages below it are not sent); tool ``log_later {level,
                        message, delay}`` answers "later" at once, then after ``delay`` seconds sends a
                        log message on its own, outside any request (the handshake era only: on a
                        2026-07-28 connection the SDK drops it, as a log belongs to a request there);
                        ``completions`` (greet's ``name`` from Alice, Albert, Bob; with --template, the
                        template's ``text`` from hello, help, world; by prefix); resource
                        test://counter (its value as text) with ``resources.subscribe``: tool ``bump``
                        adds one and announces ``notifications/resources/updated`` (handshake era: to
                        a client subscribed with ``resources/subscribe``; 2026-07-28: on the
                        ``subscriptions/listen`` streams that asked for the URI); tool ``subscribed``
                        lists the URIs subscribed with ``resources/subscribe``.
  --http PORT           serve Streamable HTTP at http://127.0.0.1:PORT/mcp instead of stdio (uvicorn).
  --expire-sessions     (with --http) tool ``expire`` -> "expired": the server forgets every
                        2025-11-25 session it has handed out (``Mcp-Session-Id``), so the next request
                        carrying one gets 404 with a JSON-RPC error, as the spec says of an expired
                        session; a new ``initialize`` starts a new session, which works.
  --sse PORT            serve the legacy SSE transport at http://127.0.0.1:PORT/sse instead of stdio.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn, cast

import anyio
import anyio.to_thread
import jsonschema
import mcp.types as types
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp.server.runner import serve_loop
from mcp.server.stdio import stdio_server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated, ToolsListChanged
from mcp.shared.exceptions import MCPError

Ctx = ServerRequestContext[Any, Any]
ToolFn = Callable[[Ctx, dict[str, Any]], Awaitable[types.CallToolResult]]

INFO_URI = "test://info"
COUNTER_URI = "test://counter"
LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
NAMES = ("Alice", "Albert", "Bob")
WORDS = ("hello", "help", "world")
ECHO_TEMPLATE = "test://echo/{text}"
JUNK_LINES = ("this is not json\n", '{"not": "json-rpc"}\n')
_NAME_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,128}$"}},
    "required": ["name"],
    "additionalProperties": False,
}
_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def log(message: str) -> None:
    """Write one log line to stderr."""
    sys.stderr.write(f"[testserver {os.getpid()}] {message}\n")
    sys.stderr.flush()


def text_result(text: str, structured: dict[str, Any] | None = None) -> types.CallToolResult:
    """A successful tool result with one text block."""
    return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=structured)


def error_result(text: str) -> types.CallToolResult:
    """A tool error result (``is_error: true``)."""
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)


LONE_MARK = "@@lone@@"


class WireWriter:
    """Async text sink on the protocol fd: whole-string writes under a lock (``--junk-stdout`` and
    ``--lone-surrogate`` only)."""

    def __init__(self, fd: int, lone: bool = False) -> None:
        self._fd = fd
        self._lock = anyio.Lock()
        self._lone = lone

    async def write(self, text: str) -> None:
        """Write all of ``text`` before any other writer may start."""
        if self._lone:
            text = text.replace(LONE_MARK, "\\ud800")
        data = text.encode()
        async with self._lock:
            await anyio.to_thread.run_sync(self._write_all, data)

    async def flush(self) -> None:
        """Nothing is buffered."""

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]


class TestServer:
    """Tool registry and MCP handlers for one server process."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.completed_calls = 0
        self.bus = InMemorySubscriptionBus()
        self.junk: WireWriter | None = None
        self.wire: WireWriter | None = None  # the protocol fd, when the server writes to it itself
        self.tasks: anyio.abc.TaskGroup | None = None  # (--flood-notifications)
        self.background: anyio.abc.TaskGroup | None = None  # (--extras: log_later)
        self.level: str | None = None  # set by logging/setLevel (--extras)
        self.counter = 0  # test://counter (--extras)
        self.subscribed: set[str] = set()  # by resources/subscribe (--extras)
        self.tools: dict[str, tuple[types.Tool, ToolFn, jsonschema.protocols.Validator]] = {}
        text_schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
        self.add("echo", "Echo the text back.", text_schema, self._echo, output=text_schema)
        pid_out = {
            "type": "object",
            "properties": {"pid": {"type": "integer"}, "pid_namespace": {"type": "string"}},
            "required": ["pid", "pid_namespace"],
        }
        self.add("pid", "Return the server process id.", _EMPTY_SCHEMA, self._pid, output=pid_out)
        self.add("env", "Return the server environment as JSON text.", _EMPTY_SCHEMA, self._env)
        sleep_in = {
            "type": "object",
            "properties": {"seconds": {"type": "number", "minimum": 0}},
            "required": ["seconds"],
        }
        self.add("sleep", "Sleep, reporting progress every 0.1 s.", sleep_in, self._sleep)
        if args.read_only_sleep:
            self.add("peek", "Sleep, changing nothing.", sleep_in, self._sleep, read_only=True)
        self.add("fail", "Always return a tool error.", _EMPTY_SCHEMA, self._fail)
        if args.oversized_line:
            self.add("oversize", "Write a 65 MiB stdout line, then answer.", _EMPTY_SCHEMA, self._oversize)
        self.add("log", "Send a log message to the client, then answer.", text_schema, self._log)
        add_in = {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
            "additionalProperties": False,
        }
        sum_out = {"type": "object", "properties": {"sum": {"type": "integer"}}, "required": ["sum"]}
        self.add("add", "Add two integers.", add_in, self._add, output=sum_out)
        for i in range(args.tools):
            self.add(f"t{i}", f"Trivial tool number {i}.", _EMPTY_SCHEMA, self._trivial)
        if args.asks:
            prompt_in = {
                "type": "object",
                "properties": {"prompt": {"type": "string"}},
                "required": ["prompt"],
            }
            message_in = {
                "type": "object",
                "properties": {"message": {"type": "string"}},
                "required": ["message"],
            }
            self.add("sample", "Ask the caller for an LLM completion.", prompt_in, self._sample)
            self.add("elicit", "Ask the user for a name.", message_in, self._elicit)
            self.add("ask_twice", "Sample, then elicit.", prompt_in, self._ask_twice)
        if args.list_changed:
            self.add("add_tool", "Register a new trivial tool and announce it.", _NAME_SCHEMA, self._add_tool)
            self.add("remove_tool", "Remove a tool and announce it.", _NAME_SCHEMA, self._remove_tool)
        self.expiry: SessionExpiry | None = None  # (--expire-sessions, set by serve_http)
        if args.expire_sessions:
            self.add(
                "expire", "Forget every session: their next request gets 404.", _EMPTY_SCHEMA, self._expire
            )
        if args.extras:
            later_in = {
                "type": "object",
                "properties": {
                    "level": {"enum": list(LEVELS)},
                    "message": {"type": "string"},
                    "delay": {"type": "number", "minimum": 0},
                },
                "required": ["level", "message"],
            }
            self.add("log_later", "Answer, then log a message on its own.", later_in, self._log_later)
            self.add("level", "The log level last set by logging/setLevel.", _EMPTY_SCHEMA, self._level)
            self.add("bump", "Add one to test://counter and announce it.", _EMPTY_SCHEMA, self._bump)
            self.add(
                "subscribed", "The URIs subscribed by resources/subscribe.", _EMPTY_SCHEMA, self._subscribed
            )

    def add(
        self,
        name: str,
        description: str,
        schema: dict[str, Any],
        fn: ToolFn,
        output: dict[str, Any] | None = None,
        read_only: bool = False,
    ) -> None:
        """Register a tool."""
        annotations = types.ToolAnnotations(read_only_hint=True) if read_only else None
        tool = types.Tool(
            name=name,
            description=description,
            input_schema=schema,
            output_schema=output,
            annotations=annotations,
        )
        self.tools[name] = (tool, fn, jsonschema.Draft202012Validator(schema))

    def build(self) -> Server[Any]:
        """The low-level SDK server wired to this registry."""
        extras = self.args.extras
        logging: dict[str, Any] = {"on_set_logging_level": self.set_level} if extras else {}
        with warnings.catch_warnings():  # (the logging capability is deprecated as of 2026-07-28)
            warnings.simplefilter("ignore")
            server = self._server(extras, logging)
        if self.args.legacy_only:
            server.middleware.append(legacy_only_middleware)
        return server

    def _server(self, extras: bool, logging: dict[str, Any]) -> Server[Any]:
        return Server(
            self.args.name,
            version="1.0.0",
            instructions="MCP Hub test server",
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_list_resources=self.list_resources,
            on_read_resource=self.read_resource,
            on_list_resource_templates=self.list_resource_templates if self.args.template else None,
            on_list_prompts=self.list_prompts,
            on_get_prompt=self.get_prompt,
            on_subscriptions_listen=ListenHandler(self.bus) if self.args.list_changed or extras else None,
            on_completion=self.complete if extras else None,
            on_subscribe_resource=self.subscribe if extras else None,
            on_unsubscribe_resource=self.unsubscribe if extras else None,
            **logging,
        )

    # --- handlers -----------------------------------------------------------------------------------

    async def list_tools(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        """All tools, one page (the first, with --flood-notifications, starts the flood)."""
        if self.args.flood_notifications and self.tasks is not None and self.wire is not None:
            self.tasks.start_soon(flood_notifications, self.wire)
            self.tasks = None
        return types.ListToolsResult(tools=[tool for tool, _, _ in self.tools.values()])

    async def call_tool(self, ctx: Ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        """Dispatch a tool call (crash and junk hooks first)."""
        if self.args.crash_after is not None and self.completed_calls >= self.args.crash_after:
            log(f"crash-after {self.args.crash_after}: exiting with code 3 during call {params.name!r}")
            os._exit(3)
        if self.junk is not None:
            await self.junk.write(f"junk during tool call {params.name}: this is not json\n")
        entry = self.tools.get(params.name)
        if entry is None:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        _, fn, validator = entry
        arguments = params.arguments or {}
        errors = sorted(validator.iter_errors(arguments), key=str)
        try:
            if errors:
                return error_result(f"invalid arguments for {params.name}: {errors[0].message}")
            return await fn(ctx, arguments)
        finally:
            self.completed_calls += 1

    async def list_resources(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        """The one resource (and test://counter, with --extras)."""
        info = types.Resource(name="info", uri=INFO_URI, mime_type="text/plain", description="Server info.")
        counter = types.Resource(
            name="counter", uri=COUNTER_URI, mime_type="text/plain", description="A count."
        )
        return types.ListResourcesResult(resources=[info, counter] if self.args.extras else [info])

    async def list_resource_templates(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        """The one template (with --template)."""
        echo = types.ResourceTemplate(
            name="echo", uri_template=ECHO_TEMPLATE, mime_type="text/plain", description="Reads back {text}."
        )
        return types.ListResourceTemplatesResult(resource_templates=[echo])

    async def read_resource(
        self, ctx: Ctx, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        """Read test://info, or (with --template) test://echo/{text}."""
        uri = str(params.uri)
        prefix = ECHO_TEMPLATE.removesuffix("{text}")
        if self.args.template and uri.startswith(prefix):
            text = uri.removeprefix(prefix)
            return types.ReadResourceResult(
                contents=[types.TextResourceContents(uri=uri, mime_type="text/plain", text=text)]
            )
        if self.args.extras and uri == COUNTER_URI:
            counted = types.TextResourceContents(uri=uri, mime_type="text/plain", text=str(self.counter))
            return types.ReadResourceResult(contents=[counted])
        if uri != INFO_URI:
            raise MCPError(code=-32002, message=f"Resource not found: {params.uri}")
        text = f"testserver name={self.args.name} pid={os.getpid()}"
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=INFO_URI, mime_type="text/plain", text=text)]
        )

    async def list_prompts(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        """The one prompt."""
        arg = types.PromptArgument(name="name", description="Who to greet.", required=True)
        return types.ListPromptsResult(
            prompts=[types.Prompt(name="greet", description="Greet someone.", arguments=[arg])]
        )

    async def get_prompt(self, ctx: Ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        """Render greet."""
        if params.name != "greet":
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown prompt: {params.name}")
        name = (params.arguments or {}).get("name")
        if not name:
            raise MCPError(code=types.INVALID_PARAMS, message="Missing required argument: name")
        message = types.PromptMessage(role="user", content=types.TextContent(text=f"Hello, {name}!"))
        return types.GetPromptResult(description="A greeting.", messages=[message])

    async def set_level(self, ctx: Ctx, params: types.SetLevelRequestParams) -> types.EmptyResult:
        """logging/setLevel (--extras): remember the level."""
        self.level = params.level
        log(f"log level set to {params.level}")
        return types.EmptyResult()

    async def complete(self, ctx: Ctx, params: types.CompleteRequestParams) -> types.CompleteResult:
        """completion/complete (--extras): greet's name, the echo template's text, by prefix."""
        ref, argument = params.ref, params.argument
        if isinstance(ref, types.PromptReference) and ref.name == "greet" and argument.name == "name":
            choices: tuple[str, ...] = NAMES
        elif isinstance(ref, types.ResourceTemplateReference) and ref.uri == ECHO_TEMPLATE:
            choices = WORDS
        else:
            choices = ()
        values = [value for value in choices if value.startswith(argument.value)]
        return types.CompleteResult(
            completion=types.Completion(values=values, total=len(values), has_more=False)
        )

    async def subscribe(self, ctx: Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
        """resources/subscribe (--extras, handshake era)."""
        self.subscribed.add(str(params.uri))
        return types.EmptyResult()

    async def unsubscribe(self, ctx: Ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        """resources/unsubscribe (--extras, handshake era)."""
        self.subscribed.discard(str(params.uri))
        return types.EmptyResult()

    # --- tools --------------------------------------------------------------------------------------

    async def _log_later(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        level, message, delay = args["level"], args["message"], float(args.get("delay", 0.0))
        session = ctx.session

        async def later() -> None:
            await anyio.sleep(delay)
            if self.level is None or LEVELS.index(level) >= LEVELS.index(self.level):
                await session.send_log_message(level, message, logger="testserver")

        assert self.background is not None
        self.background.start_soon(later)
        return text_result("later")

    async def _level(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        return text_result(self.level or "none")

    async def _bump(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        self.counter += 1
        if COUNTER_URI in self.subscribed:
            await ctx.session.send_resource_updated(COUNTER_URI)  # handshake era; dropped at 2026-07-28
        await self.bus.publish(ResourceUpdated(uri=COUNTER_URI))  # 2026-07-28: listen streams that asked
        return text_result(str(self.counter))

    async def _subscribed(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        return text_result(json.dumps(sorted(self.subscribed)))

    async def _echo(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        return text_result(args["text"], {"text": args["text"]})

    async def _pid(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        # Sandboxed, the pid is the one of its own pid namespace: the namespace says which one.
        namespace = os.readlink("/proc/self/ns/pid")
        return text_result(str(os.getpid()), {"pid": os.getpid(), "pid_namespace": namespace})

    async def _env(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        return text_result(json.dumps(dict(os.environ), sort_keys=True))

    async def _sleep(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        seconds = float(args["seconds"])
        steps = math.ceil(seconds / 0.1)
        start = time.monotonic()
        try:
            for step in range(1, steps + 1):
                await anyio.sleep(max(0.0, start + min(step * 0.1, seconds) - time.monotonic()))
                # No-op unless the request carried a progress token.
                await ctx.session.report_progress(min(step * 0.1, seconds), seconds, f"step {step}/{steps}")
        except anyio.get_cancelled_exc_class():
            log(f"sleep cancelled after {time.monotonic() - start:.2f} s")
            raise
        return text_result("slept")

    async def _log(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        await ctx.session.send_log_message(
            "warning", args["text"], logger="testserver", related_request_id=ctx.request_id
        )
        return text_result("logged")

    async def _sampled(self, ctx: Ctx, prompt: str) -> str:
        message = types.SamplingMessage(role="user", content=types.TextContent(text=prompt))
        result = await ctx.session.create_message(
            [message], max_tokens=100, related_request_id=ctx.request_id
        )
        content = result.content
        return "sampled: " + (content.text if isinstance(content, types.TextContent) else str(content))

    async def _elicited(self, ctx: Ctx, message: str) -> str:
        schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
        result = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
        return f"elicited: {result.action} {json.dumps(result.content, sort_keys=True)}"

    async def _asking(self, *asks: Callable[[], Awaitable[str]]) -> types.CallToolResult:
        try:
            return text_result("; ".join([await ask() for ask in asks]))
        except MCPError as exc:
            return error_result(f"asked, and got an error: {exc.error.message}")
        except anyio.get_cancelled_exc_class():
            log("asking cancelled")
            raise

    async def _sample(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        return await self._asking(lambda: self._sampled(ctx, args["prompt"]))

    async def _elicit(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        return await self._asking(lambda: self._elicited(ctx, args["message"]))

    async def _ask_twice(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        async def sampled() -> str:
            answer = await self._sampled(ctx, args["prompt"])
            await ctx.session.send_log_message(
                "warning", "sampled", logger="testserver", related_request_id=ctx.request_id
            )
            return answer

        async def elicited() -> str:
            answer = await self._elicited(ctx, "And your name?")
            await ctx.session.send_log_message(
                "warning", "elicited", logger="testserver", related_request_id=ctx.request_id
            )
            return answer

        return await self._asking(sampled, elicited)

    async def _expire(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        if self.expiry is not None:
            self.expiry.expire()
        return text_result("expired")

    async def _fail(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        return error_result("failed on purpose")

    async def _oversize(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        assert self.wire is not None
        head = '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"'
        await self.wire.write(head + "x" * OVERSIZED_BYTES + '"}}\n')
        return text_result("oversized")

    async def _add(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        total = int(args["a"]) + int(args["b"])
        return text_result(str(total), {"sum": total})

    async def _trivial(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        return text_result("trivial")

    async def _add_tool(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        name = args["name"]
        if name in self.tools:
            return error_result(f"tool already exists: {name}")
        self.add(name, "Added at runtime.", _EMPTY_SCHEMA, self._trivial)
        await self._announce(ctx)
        return text_result(f"added {name}")

    async def _remove_tool(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        name = args["name"]
        if self.tools.pop(name, None) is None:
            return error_result(f"no such tool: {name}")
        await self._announce(ctx)
        return text_result(f"removed {name}")

    async def _announce(self, ctx: Ctx) -> None:
        """Tell both eras that the tool list changed (the SDK drops what an era cannot carry)."""
        await ctx.session.send_tool_list_changed()  # handshake era; dropped on a 2026-07-28 connection
        await self.bus.publish(ToolsListChanged())  # 2026-07-28: open subscriptions/listen streams


async def legacy_only_middleware(ctx: Ctx, call_next: CallNext) -> HandlerResult:
    """Refuse everything of the 2026-07-28 era with an immediate JSON-RPC error."""
    if ctx.request_id is not None:
        if ctx.method == "server/discover":
            raise MCPError(code=types.METHOD_NOT_FOUND, message="Method not found", data=ctx.method)
        meta = (ctx.params or {}).get("_meta")
        if isinstance(meta, Mapping) and types.PROTOCOL_VERSION_META_KEY in meta:
            raise MCPError(
                code=types.INVALID_REQUEST,
                message="this server speaks only the 2025-11-25 handshake era; send initialize first",
            )
    return await call_next(ctx)


OVERSIZED_BYTES = 65 * 1024 * 1024
FLOOD_BATCH = "".join(
    line + "\n"
    for line in (
        '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"flood"}}',
        '{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"none","progress":1}}',
        '{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}',
    )
    * 100
)


async def flood_notifications(wire: WireWriter) -> None:
    """Write notifications to stdout as fast as the pipe takes them, forever."""
    while True:
        await wire.write(FLOOD_BATCH)


def flood_stderr() -> None:
    """Write about 1 MB/s of lines to stderr forever."""
    line = b"flood " + b"x" * 93 + b"\n"
    seq = 0
    while True:
        os.write(2, f"flood chunk {seq}\n".encode() + line * 100)
        seq += 1
        time.sleep(0.01)


def hang() -> NoReturn:
    """Read stdin, never answer, never exit on EOF."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    log("hang-init: reading stdin, never answering")
    for line in sys.stdin.buffer:
        log(f"hang-init: ignoring {len(line)} bytes")
    log("hang-init: stdin closed; sleeping until killed")
    while True:
        time.sleep(3600)


async def serve(args: argparse.Namespace) -> None:
    """Serve one stdio connection until stdin closes."""
    app = TestServer(args)
    server = app.build()
    init = server.create_initialization_options(NotificationOptions(tools_changed=args.list_changed))
    if args.junk_stdout or args.oversized_line or args.flood_notifications:
        app.wire = WireWriter(1)
    if args.junk_stdout:
        app.junk = app.wire
        for junk in JUNK_LINES:
            await app.wire.write(junk)
    wire = WireWriter(1, lone=True) if args.lone_surrogate else app.wire
    async with (
        stdio_server(stdout=cast(Any, wire)) as (read_stream, write_stream),
        anyio.create_task_group() as tg,
    ):
        log(f"serving {args.name!r} ({'legacy only' if args.legacy_only else 'both eras'})")
        app.tasks = tg
        app.background = tg
        if args.legacy_only:
            async with write_stream, server.lifespan(server) as state:
                await serve_loop(server, read_stream, write_stream, lifespan_state=state, init_options=init)
        else:
            await server.run(read_stream, write_stream, init)
        tg.cancel_scope.cancel()
    log("stdin closed; exiting")


class SessionExpiry:
    """An ASGI wrapper (``--expire-sessions``) that notes every ``Mcp-Session-Id`` it sees and,
    once told to expire them, answers 404 to any later request that carries one."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: set[bytes] = set()
        self.forgotten: set[bytes] = set()

    def expire(self) -> None:
        self.forgotten |= self.seen
        self.seen = set()
        log(f"expired {len(self.forgotten)} session(s)")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session = dict(scope["headers"]).get(b"mcp-session-id")
        if session in self.forgotten:
            body = json.dumps(
                {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": "Session not found"}}
            ).encode()
            head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 404, "headers": head})
            await send({"type": "http.response.body", "body": body})
            return
        if session:
            self.seen.add(session)

        async def noting(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.seen.update(v for k, v in message.get("headers", []) if k.lower() == b"mcp-session-id")
            await send(message)

        await self.app(scope, receive, noting)


def serve_http(args: argparse.Namespace) -> None:
    """Serve Streamable HTTP at http://127.0.0.1:PORT/mcp (``--http``) or SSE at /sse (``--sse``)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Mount, Route

    app = TestServer(args)
    server = app.build()
    if args.http:
        asgi: Any = server.streamable_http_app()
        if args.expire_sessions:
            asgi = app.expiry = SessionExpiry(asgi)
        port = args.http
    else:
        from mcp.server.sse import SseServerTransport

        sse = SseServerTransport("/messages/")
        init = server.create_initialization_options(NotificationOptions(tools_changed=args.list_changed))

        async def handle_sse(request: Any) -> Response:
            async with sse.connect_sse(request.scope, request.receive, request._send) as (read, write):
                await server.run(read, write, init)
            return Response()

        asgi = Starlette(
            routes=[
                Route("/sse", endpoint=handle_sse, methods=["GET"]),
                Mount("/messages/", app=sse.handle_post_message),
            ]
        )
        port = args.sse
    log(f"serving {args.name!r} over {'Streamable HTTP' if args.http else 'SSE'} on port {port}")
    uvicorn.run(asgi, host="127.0.0.1", port=port, log_level="warning")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags (see the module docstring)."""
    p = argparse.ArgumentParser(description="Configurable MCP test server (stdio).")
    p.add_argument("--name", default="testserver", help="server name (default: testserver)")
    p.add_argument("--tools", type=int, default=0, metavar="N", help="add trivial tools t0..t{N-1}")
    p.add_argument(
        "--crash-after", type=int, metavar="N", help="exit(3) during the call after N completed calls"
    )
    p.add_argument("--exit-at-start", action="store_true", help="exit with code 4 before serving")
    p.add_argument("--junk-stdout", action="store_true", help="write non-JSON junk to stdout")
    p.add_argument("--flood-stderr", action="store_true", help="write ~1 MB/s to stderr")
    p.add_argument("--oversized-line", action="store_true", help="tool oversize: a 65 MiB stdout line")
    p.add_argument("--flood-notifications", action="store_true", help="flood stdout with notifications")
    p.add_argument("--hang-init", action="store_true", help="read stdin, never answer")
    p.add_argument("--list-changed", action="store_true", help="add_tool/remove_tool + list_changed")
    p.add_argument("--template", action="store_true", help="also the resource template test://echo/{text}")
    p.add_argument("--asks", action="store_true", help="sample, elicit, ask_twice: ask the caller mid-call")
    p.add_argument(
        "--read-only-sleep", action="store_true", help="tool peek {seconds}: sleep, annotated readOnlyHint"
    )
    p.add_argument("--legacy-only", action="store_true", help="serve only the 2025-11-25 handshake era")
    p.add_argument("--print-env-at-start", action="store_true", help="environment as JSON on stderr")
    p.add_argument("--lone-surrogate", action="store_true", help="@@lone@@ in answers becomes \\ud800")
    p.add_argument("--extras", action="store_true", help="logging, completions, subscriptions (issue 20)")
    p.add_argument("--expire-sessions", action="store_true", help="tool expire: forget every HTTP session")
    p.add_argument("--http", type=int, metavar="PORT", help="serve Streamable HTTP on 127.0.0.1:PORT/mcp")
    p.add_argument("--sse", type=int, metavar="PORT", help="serve SSE on 127.0.0.1:PORT/sse")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    if args.print_env_at_start:
        sys.stderr.write(json.dumps(dict(os.environ), sort_keys=True) + "\n")
        sys.stderr.flush()
    if args.exit_at_start:
        log("exit-at-start: exiting with code 4")
        return 4
    if args.hang_init:
        hang()
    if args.flood_stderr:
        threading.Thread(target=flood_stderr, name="flood-stderr", daemon=True).start()
    if args.http or args.sse:
        serve_http(args)
        return 0
    anyio.run(serve, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
