#!/usr/bin/env python3
"""Fixture MCP server for the official conformance suite's server scenarios (``mcp`` 2.x, low-level).

Run as a script, as a real subprocess:

    python tests/servers/conformanceserver.py              # stdio (what the hub runs)
    python tests/servers/conformanceserver.py --http PORT  # Streamable HTTP, 127.0.0.1:PORT/mcp

``--http 0`` takes a free port. Over HTTP the one line on stdout is ``listening on
http://127.0.0.1:PORT/mcp``, written once the socket accepts connections (a test reads it instead
of polling the port); over stdio, stdout is protocol only. Logs go to stderr. It serves both
protocol eras as the SDK does (2025-11-25 handshake and 2026-07-28); over HTTP the SDK's DNS
rebinding protection allows only loopback Host and Origin headers.

It implements what ``@modelcontextprotocol/conformance`` 0.1.13 (``src/scenarios/server/``) calls,
under the names and with the contents the scenarios expect (facts from the suite, code our own):

  tools      test_simple_text, test_image_content (PNG), test_audio_content (audio/wav),
             test_embedded_resource, test_multiple_content_types (text + image + resource),
             test_tool_with_logging (three info log messages ~50 ms apart),
             test_tool_with_progress (0, 50, 100 of 100 ~50 ms apart, if a progress token came),
             test_error_handling (``is_error``), test_sampling {prompt} (sampling/createMessage),
             test_elicitation {message} (elicitation/create: username, email),
             test_elicitation_sep1034_defaults (a default for each primitive type),
             test_elicitation_sep1330_enums (the five enum schema shapes),
             json_schema_2020_12_tool (``$schema``, ``$defs``, ``additionalProperties`` kept).
             Sampling and elicitation are server-to-client requests on a 2025-11-25 connection and
             an ``InputRequiredResult`` (answered on the retry's ``inputResponses``) on 2026-07-28;
             a client without the capability gets an ``is_error`` result.
  resources  test://static-text, test://static-binary (PNG), test://watched-resource; template
             test://template/{id}/data; resources/subscribe and unsubscribe (tracked, answer {});
             on 2026-07-28, where those methods are gone, `subscriptions/listen` (the SDK's
             ListenHandler), as an SDK server serves it: a dual-era server subscribable in both.
  prompts    test_simple_prompt, test_prompt_with_arguments {arg1, arg2},
             test_prompt_with_embedded_resource {resourceUri}, test_prompt_with_image.
  completion values for the prompt arguments and the template's {id}, filtered by prefix.
  logging    logging/setLevel: one level per HTTP session (one for the stdio connection); the
             logging tool sends only messages at or above it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp.types as types
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import is_version_at_least

Ctx = ServerRequestContext[Any, Any]
Paging = types.PaginatedRequestParams | None
ToolResult = types.CallToolResult | types.InputRequiredResult
ToolFn = Callable[[Ctx, dict[str, Any]], Awaitable[ToolResult]]

LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
TEMPLATE = "test://template/{id}/data"
TEMPLATE_RE = re.compile(r"^test://template/([^/]+)/data$")
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
COMPLETIONS = {
    "arg1": ["paris", "park", "party", "test", "testing"],
    "arg2": ["world", "word", "work"],
    "id": ["1", "12", "123", "456"],
}
CAN_SAMPLE = types.ClientCapabilities(sampling=types.SamplingCapability())
CAN_ELICIT = types.ClientCapabilities(elicitation=types.ElicitationCapability())


def log(message: str) -> None:
    """Write one log line to stderr."""
    sys.stderr.write(f"[conformanceserver {os.getpid()}] {message}\n")
    sys.stderr.flush()


# A 1x1 red PNG, and 2 ms of 8 kHz 8-bit mono silence as a WAV file (PCM), in base64.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
WAV = "UklGRjQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YRAAAACAgICAgICAgICAgICAgICA"


def text(value: str) -> types.TextContent:
    """One text content block."""
    return types.TextContent(text=value)


def image() -> types.ImageContent:
    """The test PNG as image content."""
    return types.ImageContent(data=PNG, mime_type="image/png")


def text_contents(uri: str, mime_type: str, value: str) -> types.TextResourceContents:
    """The contents of a text resource."""
    return types.TextResourceContents(uri=uri, mime_type=mime_type, text=value)


def embedded(uri: str, mime_type: str, value: str) -> types.EmbeddedResource:
    """An embedded text resource."""
    return types.EmbeddedResource(resource=text_contents(uri, mime_type, value))


def answer(*content: types.ContentBlock, is_error: bool = False) -> types.CallToolResult:
    """A tool result of `content`."""
    return types.CallToolResult(content=list(content), is_error=is_error)


def fixed(result: types.CallToolResult) -> ToolFn:
    """A tool that always answers `result`."""

    async def call(ctx: Ctx, args: dict[str, Any]) -> ToolResult:
        return result

    return call


def string_args(*names: str) -> dict[str, Any]:
    """An input schema of required string arguments."""
    props = {n: {"type": "string", "description": f"the {n}"} for n in names}
    return {"type": "object", "properties": props, "required": list(names)}


def connection_key(ctx: Ctx) -> str:
    """The HTTP session of this request (its ``Mcp-Session-Id``), or ``stdio``: where a log level lives."""
    headers = getattr(ctx.request, "headers", None)
    return (headers.get("mcp-session-id") if headers is not None else None) or "stdio"


class ConformanceServer:
    """The fixture's handlers and state (log levels, subscriptions); ``build()`` makes the SDK server."""

    def __init__(self) -> None:
        self.levels: dict[str, str] = {}
        self.subscriptions: set[str] = set()
        self.tools: dict[str, tuple[types.Tool, ToolFn]] = {}
        for name, (description, result) in FIXED_TOOLS.items():
            self.tool(name, description, fixed(result), SCHEMAS.get(name))
        self.tool("test_tool_with_logging", "Send three info log messages.", self.with_logging)
        self.tool("test_tool_with_progress", "Report progress 0, 50, 100 of 100.", self.with_progress)
        self.tool("test_sampling", "Ask the client's LLM.", self.sampling, string_args("prompt"))
        self.tool(
            "test_elicitation", "Ask for a name and an email.", self.elicitation, string_args("message")
        )
        self.tool("test_elicitation_sep1034_defaults", "Elicit with defaults.", self.elicit_defaults)
        self.tool("test_elicitation_sep1330_enums", "Elicit with every enum shape.", self.elicit_enums)

    def tool(self, name: str, description: str, fn: ToolFn, schema: dict[str, Any] | None = None) -> None:
        """Register tool `name`."""
        tool = types.Tool(name=name, description=description, input_schema=schema or EMPTY_SCHEMA)
        self.tools[name] = (tool, fn)

    # ----- tools that do something -----

    async def with_logging(self, ctx: Ctx, args: dict[str, Any]) -> ToolResult:
        """Three info messages about 50 ms apart, if the connection's level lets info through."""
        loud_enough = LEVELS.index("info") >= LEVELS.index(self.levels.get(connection_key(ctx), "debug"))
        for i, message in enumerate(
            ("Tool execution started", "Tool processing data", "Tool execution completed")
        ):
            if i:
                await anyio.sleep(0.05)
            if loud_enough:
                await ctx.session.send_log_message("info", message, "conformanceserver", ctx.request_id)
        return answer(text("Logging tool completed: 3 messages"))

    async def with_progress(self, ctx: Ctx, args: dict[str, Any]) -> ToolResult:
        """Progress 0, 50 and 100 of 100, about 50 ms apart (the SDK sends none without a token)."""
        for i, step in enumerate((0, 50, 100)):
            if i:
                await anyio.sleep(0.05)
            await ctx.session.report_progress(step, 100, f"step {i + 1} of 3")
        return answer(text("Progress tool completed"))

    async def ask(self, ctx: Ctx, request: types.CreateMessageRequest | types.ElicitRequest) -> Any:
        """The client's answer to `request`: a server-to-client request on a handshake connection; on
        2026-07-28 the answer on the retry, else an ``InputRequiredResult`` asking for it."""
        if not is_version_at_least(ctx.protocol_version, "2026-07-28"):
            kind = (
                types.ElicitResult if isinstance(request, types.ElicitRequest) else types.CreateMessageResult
            )
            related = ServerMessageMetadata(related_request_id=ctx.request_id)
            return await ctx.session.send_request(request, kind, metadata=related)
        params = types.CallToolRequestParams.model_validate(dict(ctx.params or {}))
        reply = (params.input_responses or {}).get("input")
        return types.InputRequiredResult(input_requests={"input": request}) if reply is None else reply

    async def sampling(self, ctx: Ctx, args: dict[str, Any]) -> ToolResult:
        """Sample the client's LLM with the ``prompt`` argument, answer its text."""
        if not ctx.session.check_client_capability(CAN_SAMPLE):
            return answer(text("The client does not support sampling"), is_error=True)
        message = types.SamplingMessage(role="user", content=text(str(args.get("prompt", ""))))
        params = types.CreateMessageRequestParams(messages=[message], max_tokens=100)
        reply = await self.ask(ctx, types.CreateMessageRequest(params=params))
        if isinstance(reply, types.InputRequiredResult):
            return reply
        content = getattr(reply, "content", None)
        return answer(
            text(f"LLM response: {content.text if isinstance(content, types.TextContent) else content}")
        )

    async def elicit(self, ctx: Ctx, message: str, schema: dict[str, Any], prefix: str) -> ToolResult:
        """Elicit a form with `schema`, answer the action and content after `prefix`."""
        if not ctx.session.check_client_capability(CAN_ELICIT):
            return answer(text("The client does not support elicitation"), is_error=True)
        params = types.ElicitRequestFormParams(message=message, requested_schema=schema)
        reply = await self.ask(ctx, types.ElicitRequest(params=params))
        if isinstance(reply, types.InputRequiredResult):
            return reply
        content = json.dumps(getattr(reply, "content", None))
        return answer(text(f"{prefix}: action={reply.action}, content={content}"))

    async def elicitation(self, ctx: Ctx, args: dict[str, Any]) -> ToolResult:
        """Ask for a username and an email with the ``message`` argument."""
        return await self.elicit(ctx, str(args.get("message", "")), USER_SCHEMA, "User response")

    async def elicit_defaults(self, ctx: Ctx, args: dict[str, Any]) -> ToolResult:
        """SEP-1034: a default for a string, an integer, a number, an enum and a boolean."""
        return await self.elicit(ctx, "Please review the defaults", DEFAULTS_SCHEMA, "Elicitation completed")

    async def elicit_enums(self, ctx: Ctx, args: dict[str, Any]) -> ToolResult:
        """SEP-1330: untitled, titled and legacy single-select, untitled and titled multi-select."""
        return await self.elicit(ctx, "Please pick options", ENUMS_SCHEMA, "Elicitation completed")

    # ----- request handlers -----

    async def list_tools(self, ctx: Ctx, params: Paging) -> types.ListToolsResult:
        """Every tool."""
        return types.ListToolsResult(tools=[tool for tool, _ in self.tools.values()])

    async def call_tool(self, ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
        """Dispatch to the tool; an unknown one is a JSON-RPC invalid-params error."""
        entry = self.tools.get(params.name)
        if entry is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        return await entry[1](ctx, dict(params.arguments or {}))

    async def list_resources(self, ctx: Ctx, params: Paging) -> types.ListResourcesResult:
        """The direct resources (not the template)."""
        return types.ListResourcesResult(resources=RESOURCES)

    async def list_templates(self, ctx: Ctx, params: Paging) -> types.ListResourceTemplatesResult:
        """The one template."""
        template = types.ResourceTemplate(
            name="template", uri_template=TEMPLATE, description="Data for an id", mime_type="application/json"
        )
        return types.ListResourceTemplatesResult(resource_templates=[template])

    async def read_resource(
        self, ctx: Ctx, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        """A listed resource, or a read of the template; anything else is invalid params."""
        uri = str(params.uri)
        contents = CONTENTS.get(uri)
        if contents is None and (match := TEMPLATE_RE.match(uri)):
            data = {"id": match.group(1), "templateTest": True, "data": f"Data for ID: {match.group(1)}"}
            contents = text_contents(uri, "application/json", json.dumps(data))
        if contents is None:
            raise MCPError(types.INVALID_PARAMS, f"Resource not found: {uri}")
        return types.ReadResourceResult(contents=[contents])

    async def subscribe(self, ctx: Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
        """Track the URI (this fixture never changes a resource, so it never sends an update)."""
        self.subscriptions.add(str(params.uri))
        return types.EmptyResult()

    async def unsubscribe(self, ctx: Ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        """Forget the URI."""
        self.subscriptions.discard(str(params.uri))
        return types.EmptyResult()

    async def list_prompts(self, ctx: Ctx, params: Paging) -> types.ListPromptsResult:
        """The four prompts."""
        return types.ListPromptsResult(prompts=PROMPTS)

    async def get_prompt(self, ctx: Ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        """The prompt's messages; an unknown prompt or a missing required argument is invalid params."""
        args = params.arguments or {}
        prompt = next((p for p in PROMPTS if p.name == params.name), None)
        if prompt is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {params.name}")
        absent = [a.name for a in prompt.arguments or [] if a.required and a.name not in args]
        if absent:
            raise MCPError(types.INVALID_PARAMS, f"Missing required arguments: {', '.join(absent)}")
        return types.GetPromptResult(
            description=prompt.description, messages=prompt_messages(prompt.name, args)
        )

    async def complete(self, ctx: Ctx, params: types.CompleteRequestParams) -> types.CompleteResult:
        """Candidates for a prompt argument or the template's ``id`` that start with the typed value."""
        values = [v for v in COMPLETIONS.get(params.argument.name, []) if v.startswith(params.argument.value)]
        return types.CompleteResult(
            completion=types.Completion(values=values, total=len(values), has_more=False)
        )

    async def set_level(self, ctx: Ctx, params: types.SetLevelRequestParams) -> types.EmptyResult:
        """Remember the level for this connection."""
        self.levels[connection_key(ctx)] = params.level
        return types.EmptyResult()

    def build(self) -> Server[Any]:
        """The SDK server with every handler (``logging/setLevel`` is deprecated as of 2026-07-28: the
        SDK's warning is silenced here, since serving it to 2025-11-25 clients is the point)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            return Server(
                "conformanceserver",
                version="1.0.0",
                on_list_tools=self.list_tools,
                on_call_tool=self.call_tool,
                on_list_resources=self.list_resources,
                on_list_resource_templates=self.list_templates,
                on_read_resource=self.read_resource,
                on_subscribe_resource=self.subscribe,
                on_unsubscribe_resource=self.unsubscribe,
                on_list_prompts=self.list_prompts,
                on_get_prompt=self.get_prompt,
                on_completion=self.complete,
                on_set_logging_level=self.set_level,
                on_subscriptions_listen=ListenHandler(InMemorySubscriptionBus()),
            )


def prompt_messages(name: str, args: dict[str, str]) -> list[types.PromptMessage]:
    """The messages of prompt `name` with `args` substituted."""
    if name == "test_simple_prompt":
        contents: list[types.ContentBlock] = [text("This is a simple prompt for testing.")]
    elif name == "test_prompt_with_arguments":
        contents = [text(f"Prompt with arguments: arg1='{args['arg1']}', arg2='{args['arg2']}'")]
    elif name == "test_prompt_with_embedded_resource":
        resource = embedded(args["resourceUri"], "text/plain", "Embedded resource content for testing.")
        contents = [resource, text("Please process the embedded resource above.")]
    else:
        contents = [image(), text("Please analyze the image above.")]
    return [types.PromptMessage(role="user", content=content) for content in contents]


def prompt(name: str, description: str, **arguments: str) -> types.Prompt:
    """A prompt whose `arguments` (name: description) are all required."""
    args = [types.PromptArgument(name=n, description=d, required=True) for n, d in arguments.items()]
    return types.Prompt(name=name, description=description, arguments=args or None)


def resource(uri: str, description: str, mime_type: str) -> types.Resource:
    """A listed resource, named after its URI."""
    return types.Resource(
        uri=uri, name=uri.removeprefix("test://"), description=description, mime_type=mime_type
    )


def titled(word: str, *titles: str) -> list[dict[str, str]]:
    """``{const, title}`` options value1, value2, ... for the titled enum shapes of SEP-1330."""
    return [{"const": f"value{i}", "title": f"{title} {word}"} for i, title in enumerate(titles, 1)]


ERROR = "This tool intentionally returns an error for testing"
FIXED_TOOLS: dict[str, tuple[str, types.CallToolResult]] = {
    "test_simple_text": (
        "Answer a simple text.",
        answer(text("This is a simple text response for testing.")),
    ),
    "test_image_content": ("Answer a PNG image.", answer(image())),
    "test_audio_content": ("Answer a WAV clip.", answer(types.AudioContent(data=WAV, mime_type="audio/wav"))),
    "test_embedded_resource": (
        "Answer an embedded text resource.",
        answer(embedded("test://embedded-resource", "text/plain", "This is an embedded resource content.")),
    ),
    "test_multiple_content_types": (
        "Answer text, an image and a resource.",
        answer(
            text("Multiple content types test:"),
            image(),
            embedded("test://mixed-content-resource", "application/json", '{"test":"data","value":123}'),
        ),
    ),
    "test_error_handling": ("Always fail (is_error).", answer(text(ERROR), is_error=True)),
    "json_schema_2020_12_tool": ("Tool with JSON Schema 2020-12 features", answer(text("ok"))),
}
CONTENTS: dict[str, types.TextResourceContents | types.BlobResourceContents] = {
    "test://static-text": text_contents(
        "test://static-text", "text/plain", "This is the content of the static text resource."
    ),
    "test://static-binary": types.BlobResourceContents(
        uri="test://static-binary", mime_type="image/png", blob=PNG
    ),
    "test://watched-resource": text_contents(
        "test://watched-resource", "text/plain", "Watched resource content."
    ),
}
RESOURCES = [
    resource("test://static-text", "A static text", "text/plain"),
    resource("test://static-binary", "A static PNG", "image/png"),
    resource("test://watched-resource", "A resource to subscribe to", "text/plain"),
]
PROMPTS = [
    prompt("test_simple_prompt", "A simple prompt without arguments"),
    prompt(
        "test_prompt_with_arguments", "Two arguments", arg1="First test argument", arg2="Second test argument"
    ),
    prompt(
        "test_prompt_with_embedded_resource", "Embeds a resource", resourceUri="URI of the resource to embed"
    ),
    prompt("test_prompt_with_image", "A prompt with an image"),
]
USER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "username": {"type": "string", "description": "User's response"},
        "email": {"type": "string", "description": "User's email address"},
    },
    "required": ["username", "email"],
}
DEFAULTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "default": "John Doe"},
        "age": {"type": "integer", "default": 30},
        "score": {"type": "number", "default": 95.5},
        "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
        "verified": {"type": "boolean", "default": True},
    },
}
OPTIONS = ["option1", "option2", "option3"]
STRING = {"type": "string"}
ENUMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "untitledSingle": {"type": "string", "enum": OPTIONS},
        "titledSingle": {"type": "string", "oneOf": titled("Option", "First", "Second", "Third")},
        "legacyEnum": {
            "type": "string",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {"type": "array", "items": {"type": "string", "enum": OPTIONS}},
        "titledMulti": {"type": "array", "items": {"anyOf": titled("Choice", "First", "Second", "Third")}},
    },
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "json_schema_2020_12_tool": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"address": {"type": "object", "properties": {"street": STRING, "city": STRING}}},
        "properties": {"name": STRING, "address": {"$ref": "#/$defs/address"}},
        "additionalProperties": False,
    }
}


async def serve_stdio() -> None:
    """Serve one stdio connection until stdin closes."""
    server = ConformanceServer().build()
    async with stdio_server() as (read_stream, write_stream):
        log("serving over stdio (both eras)")
        await server.run(
            read_stream, write_stream, server.create_initialization_options(NotificationOptions())
        )
    log("stdin closed; exiting")


def serve_http(port: int) -> None:
    """Serve Streamable HTTP at http://127.0.0.1:PORT/mcp; announce the URL on stdout once listening."""
    import uvicorn

    app = ConformanceServer().build().streamable_http_app(host="127.0.0.1")  # DNS rebinding protection on
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)  # connections queue from here on, before uvicorn accepts them
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    log(f"serving Streamable HTTP at {url} (both eras)")
    print(f"listening on {url}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    p = argparse.ArgumentParser(description="MCP conformance fixture server (stdio by default).")
    p.add_argument("--http", type=int, metavar="PORT", help="serve on 127.0.0.1:PORT/mcp (0: any free port)")
    args = p.parse_args(argv)
    # Logging and sampling are deprecated as of 2026-07-28; serving them to 2025-11-25 clients is the point.
    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
    if args.http is not None:
        serve_http(args.http)
    else:
        anyio.run(serve_stdio)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
