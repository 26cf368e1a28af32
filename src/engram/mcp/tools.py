"""The MCP server: mem0's tool names and argument shapes (or OpenMemory's), a resource and a prompt.

Every tool resolves its caller (backend + scope rules) from the request context, runs one operation of
:class:`engram.mcp.backend.MemoryBackend` and answers compact JSON text. Engine errors and refusals
come back as tool errors carrying the API's message; the session never crashes.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field
from pydantic import ValidationError as PydanticValidationError

from engram.errors import EngramError
from engram.mcp.backend import Caller, MemoryBackend, ToolFailure, compact, dumps

ToolNames = Literal["mem0", "openmemory"]
Resolver = Callable[[Context], Awaitable[tuple[MemoryBackend, Caller]]]
Operation = Callable[[MemoryBackend, Caller], Awaitable[Any]]
ToolOp = Callable[..., Awaitable[Any]]

INSTRUCTIONS = (
    "Engram is the user's long-term memory. Before answering anything about the user (their "
    "preferences, projects, past decisions, people they mention), search it. When the user shares a "
    "durable fact, preference or decision, or asks you to remember something, add it. Memories are "
    "scoped to a user (and optionally an agent, app or run); the server fills in the default scope."
)

Id = Annotated[str, Field(description="Exact memory id (from a search or list result).")]
UserId = Annotated[
    str | None, Field(description="User whose memories these are; default: the server's user.")
]
AgentId = Annotated[str | None, Field(description="Optional agent id to scope the memories to.")]
AppId = Annotated[str | None, Field(description="Optional app id to scope the memories to.")]
RunId = Annotated[str | None, Field(description="Optional run (session) id to scope the memories to.")]
Filters = Annotated[
    dict[str, Any] | None,
    Field(
        description='Optional filters, e.g. {"AND": [{"user_id": "alice"}, {"created_at": {"gte": '
        '"2026-01-01"}}]}; operators eq ne gt gte lt lte in nin contains icontains, AND/OR/NOT. The '
        "default scope is added when the filters name none."
    ),
]
Metadata = Annotated[
    dict[str, Any] | None, Field(description="Optional JSON metadata stored with the memory.")
]

READ = ToolAnnotations(readOnlyHint=True, openWorldHint=False)
WRITE = ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=False)
DESTROY = ToolAnnotations(readOnlyHint=False, destructiveHint=True, openWorldHint=False)


async def run(resolve: Resolver, ctx: Context, operation: Operation) -> str:
    """Resolve the caller, run the operation, answer compact JSON; failures become tool errors."""
    try:
        backend, caller = await resolve(ctx)
        return dumps(await operation(backend, caller))
    except ToolFailure as e:
        raise ToolError(str(e)) from e
    except EngramError as e:
        raise ToolError(e.message) from e


async def owned(backend: MemoryBackend, caller: Caller, memory_id: str) -> dict[str, Any]:
    """The memory, once it is known to belong to a user this caller may reach."""
    item = await backend.get(memory_id)
    if item.get("user_id"):
        caller.check_user(str(item["user_id"]))
    return item


def ids(user_id: str | None, agent_id: str | None, app_id: str | None, run_id: str | None) -> dict[str, Any]:
    return {"user_id": user_id, "agent_id": agent_id, "app_id": app_id, "run_id": run_id}


class Registrar:
    """``@tool(annotations, description)`` registers ``op(backend, caller, **arguments)`` as an MCP tool.

    The tool's schema comes from the op's arguments after ``backend, caller``; the registered handler
    takes the request context instead of those two and runs the op through :func:`run`.
    """

    def __init__(self, server: MCPServer, resolve: Resolver) -> None:
        self.server = server
        self.resolve = resolve

    def __call__(self, annotations: ToolAnnotations, description: str) -> Callable[[ToolOp], ToolOp]:
        def register(op: ToolOp) -> ToolOp:
            self.server.add_tool(
                self.handler(op),
                name=op.__name__,
                description=description,
                annotations=annotations,
                structured_output=False,
            )
            return op

        return register

    def handler(self, op: ToolOp) -> Callable[..., Awaitable[str]]:
        signature = inspect.signature(op, eval_str=True)
        params = list(signature.parameters.values())[2:]  # after backend, caller
        resolve = self.resolve

        async def handle(ctx: Context, **arguments: Any) -> str:
            return await run(resolve, ctx, lambda backend, caller: op(backend, caller, **arguments))

        context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Context)
        handle.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[context, *params], return_annotation=str
        )
        handle.__annotations__ = {"ctx": Context, **{p.name: p.annotation for p in params}, "return": str}
        handle.__name__ = handle.__qualname__ = op.__name__
        return handle


def results(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"results": [compact(item) for item in items]}


def listing(found: dict[str, Any]) -> dict[str, Any]:
    return {**results(found["results"]), "total": found["total"]}


class EngramMCPServer(MCPServer):
    """MCPServer whose argument errors read like the REST API's: ``field: problem``."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as e:
            cause = e.__cause__
            if not isinstance(cause, PydanticValidationError):
                raise
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
                for err in cause.errors()
            )
            raise ToolError(f"Invalid arguments for {name}: {problems}") from cause


def build_server(resolve: Resolver, tool_names: ToolNames = "mem0") -> MCPServer:
    """An MCP server whose tools run on what ``resolve`` returns for each request."""
    server: MCPServer = EngramMCPServer(
        "engram",
        instructions=INSTRUCTIONS,
        version="0.1.0",
        log_level="WARNING",
        warn_on_duplicate_tools=False,
    )
    if tool_names == "openmemory":
        from engram.mcp.openmemory import register_openmemory_tools

        register_openmemory_tools(server, resolve)
    else:
        _register_write_tools(server, resolve)
        _register_read_tools(server, resolve)
        _register_lookup_tools(server, resolve)
        _register_delete_tools(server, resolve)
    _register_resource_and_prompt(server, resolve, tool_names)
    return server


def _register_write_tools(server: MCPServer, resolve: Resolver) -> None:
    tool = Registrar(server, resolve)

    @tool(
        WRITE,
        "Remember something durable about the user: a fact, preference, decision or plan they shared, or "
        "anything they ask you to remember. Give `text` (one plain sentence) or `messages` (the conversation "
        "turns, role/content). With infer=true (default) Engram extracts short facts and skips ones it "
        "already knows; infer=false stores the text as given. Answers the stored memories with their event "
        "(ADD, NONE for an existing duplicate).",
    )
    async def add_memory(
        backend: MemoryBackend,
        caller: Caller,
        text: Annotated[str | None, Field(description="What to remember, as a plain sentence.")] = None,
        messages: Annotated[
            list[dict[str, Any]] | None,
            Field(description='Conversation turns, e.g. [{"role": "user", "content": "I am vegetarian"}].'),
        ] = None,
        user_id: UserId = None,
        agent_id: AgentId = None,
        app_id: AppId = None,
        run_id: RunId = None,
        metadata: Metadata = None,
        infer: Annotated[bool, Field(description="Extract facts (true) or store as given (false).")] = True,
    ) -> Any:
        content: Any = messages if messages else text
        if not content:
            raise ToolFailure("add_memory needs `text` or `messages`: what should be remembered?")
        scope = caller.add_scope(ids(user_id, agent_id, app_id, run_id))
        return results(await backend.add(content, scope, metadata=metadata, infer=infer))

    @tool(
        WRITE,
        "Change the text (and/or replace the metadata) of one memory, when the user corrects something "
        "Engram remembered. Needs the exact memory_id.",
    )
    async def update_memory(
        backend: MemoryBackend,
        caller: Caller,
        memory_id: Id,
        text: Annotated[str | None, Field(description="The corrected memory text.")] = None,
        metadata: Metadata = None,
    ) -> Any:
        await owned(backend, caller, memory_id)
        return compact(await backend.update(memory_id, text, metadata))


def _register_read_tools(server: MCPServer, resolve: Resolver) -> None:
    tool = Registrar(server, resolve)

    @tool(
        READ,
        "Search the user's memories. Call it before answering anything about the user: their preferences, "
        "plans, projects, people, past decisions. Answers the most relevant memories, best first; score is "
        "relevance between 0 and 1 (above ~0.5 is a good match). An empty list means Engram knows nothing "
        "about it.",
    )
    async def search_memories(
        backend: MemoryBackend,
        caller: Caller,
        query: Annotated[str, Field(description="What you are looking for, in natural language.")],
        filters: Filters = None,
        top_k: Annotated[
            int | None, Field(description="How many results (default 10).", ge=1, le=100)
        ] = None,
        limit: Annotated[int | None, Field(description="Same as top_k (mem0's name).", ge=1, le=100)] = None,
        user_id: UserId = None,
        agent_id: AgentId = None,
        app_id: AppId = None,
        run_id: RunId = None,
        rerank: Annotated[
            bool,
            Field(
                description="Reorder the best candidates with the configured reranker or LLM: slower, "
                "often more precise. Without one the plain ranking is returned, with a note."
            ),
        ] = False,
    ) -> Any:
        scope = caller.read_scope(ids(user_id, agent_id, app_id, run_id), filters)
        found = await backend.search(query, scope, filters=filters, top_k=top_k or limit or 10, rerank=rerank)
        return {**results(found["results"]), **({"rerank": found["rerank"]} if "rerank" in found else {})}

    @tool(
        READ,
        "List the user's memories, most recent first, without a query (page through with page and "
        "page_size). Use search_memories to find something specific.",
    )
    async def get_memories(
        backend: MemoryBackend,
        caller: Caller,
        filters: Filters = None,
        page: Annotated[int, Field(description="1-based page number.", ge=1)] = 1,
        page_size: Annotated[int, Field(description="Memories per page (default 50).", ge=1, le=1000)] = 50,
        user_id: UserId = None,
        agent_id: AgentId = None,
        app_id: AppId = None,
        run_id: RunId = None,
    ) -> Any:
        scope = caller.read_scope(ids(user_id, agent_id, app_id, run_id), filters)
        found = await backend.list_memories(
            scope, filters=filters, top_k=page_size, offset=(page - 1) * page_size
        )
        return {**listing(found), "page": page, "page_size": page_size}


def _register_lookup_tools(server: MCPServer, resolve: Resolver) -> None:
    tool = Registrar(server, resolve)

    @tool(READ, "Fetch one memory by its exact memory_id.")
    async def get_memory(backend: MemoryBackend, caller: Caller, memory_id: Id) -> Any:
        return compact(await owned(backend, caller, memory_id))

    @tool(
        READ,
        "How one memory came to be: its change history (ADD, UPDATE, SUPERSEDE, DELETE, oldest first) and "
        "the conversation messages it was extracted from.",
    )
    async def memory_history(backend: MemoryBackend, caller: Caller, memory_id: Id) -> Any:
        await owned(backend, caller, memory_id)
        return await backend.history(memory_id)

    @tool(READ, "List the users, agents, apps and runs that have memories, with their memory counts.")
    async def list_entities(backend: MemoryBackend, caller: Caller) -> Any:
        return {"results": await backend.entities(caller)}


def _register_delete_tools(server: MCPServer, resolve: Resolver) -> None:
    tool = Registrar(server, resolve)

    @tool(DESTROY, "Delete one memory by its exact memory_id, once the user has confirmed which one.")
    async def delete_memory(backend: MemoryBackend, caller: Caller, memory_id: Id) -> Any:
        await owned(backend, caller, memory_id)
        await backend.delete(memory_id)
        return {"message": "Memory deleted successfully!", "id": memory_id}

    tool(
        DESTROY,
        "Delete every memory of one scope, only when the user explicitly asks for it. The scope must be "
        "named explicitly (user_id, agent_id, app_id and/or run_id); without one the call is refused, so a "
        "whole project is never wiped.",
    )(_explicit_scope_op("delete_all_memories", _delete_all))
    tool(
        DESTROY,
        "Delete users, agents, apps or runs and all their memories, only when the user explicitly asks for "
        "it. Name at least one.",
    )(_explicit_scope_op("delete_entities", _delete_entities))


async def _delete_all(backend: MemoryBackend, scope: dict[str, str]) -> Any:
    return {"message": "Memories deleted successfully!", "deleted": await backend.delete_all(scope)}


async def _delete_entities(backend: MemoryBackend, scope: dict[str, str]) -> Any:
    deleted = {key: await backend.delete_entity(key, name) for key, name in scope.items()}
    return {"message": "Entities deleted successfully!", "deleted": deleted}


def _explicit_scope_op(
    name: str, action: Callable[[MemoryBackend, dict[str, str]], Awaitable[Any]]
) -> ToolOp:
    """A tool op whose arguments are the four scope ids, of which at least one must be given."""

    async def op(
        backend: MemoryBackend,
        caller: Caller,
        user_id: UserId = None,
        agent_id: AgentId = None,
        app_id: AppId = None,
        run_id: RunId = None,
    ) -> Any:
        return await action(backend, caller.explicit_scope(ids(user_id, agent_id, app_id, run_id), name))

    op.__name__ = op.__qualname__ = name
    return op


def _register_resource_and_prompt(server: MCPServer, resolve: Resolver, tool_names: ToolNames) -> None:
    search, add = (
        ("search_memory", "add_memories") if tool_names == "openmemory" else ("search_memories", "add_memory")
    )

    @server.resource(
        "engram://memories/{user_id}",
        name="memories",
        description="Every current memory of one user (compact JSON, most recent first).",
        mime_type="application/json",
    )
    async def user_memories(user_id: str, ctx: Context) -> str:
        async def go(backend: MemoryBackend, caller: Caller) -> Any:
            return listing(await backend.list_memories(caller.scope({"user_id": user_id}), top_k=1000))

        return await run(resolve, ctx, go)

    @server.prompt(
        name="use_engram_memory",
        description="Prime the assistant to use Engram's memory tools throughout the conversation.",
    )
    def use_engram_memory() -> str:
        return (
            f"{INSTRUCTIONS}\n\nThroughout this conversation:\n"
            "1. Before answering a question that could depend on the user (their preferences, plans, "
            f"projects, people, earlier decisions), call {search} with a short query and use what it "
            "finds; say so when you rely on a memory.\n"
            "2. When the user tells you something durable (a preference, a fact about them, a decision, a "
            f"plan) or asks you to remember it, call {add} with one plain sentence.\n"
            "3. Delete memories only when the user asks you to.\n"
            "4. Do not store secrets, passwords or one-off chit-chat."
        )
