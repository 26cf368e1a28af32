"""OpenMemory's tool names (``--tool-names openmemory``): the same operations, its argument shapes."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from engram.mcp.backend import Caller, MemoryBackend, ToolFailure, compact
from engram.mcp.tools import _DESTROY, _READ, _WRITE, Resolver, owned, run


def register_openmemory_tools(server: MCPServer, resolve: Resolver) -> None:
    """add_memories, search_memory, list_memories, delete_memories and delete_all_memories."""

    @server.tool(
        description="Add a new memory. Call it whenever the user shares something about themselves (a "
        "preference, fact, decision or plan) or asks you to remember something.",
        annotations=_WRITE,
        structured_output=False,
    )
    async def add_memories(ctx: Context, text: Annotated[str, Field(description="What to remember.")]) -> str:
        async def go(backend: MemoryBackend, caller: Caller) -> Any:
            results = await backend.add(text, caller.add_scope({}))
            return {"results": [compact(r) for r in results]}

        return await run(resolve, ctx, go)

    @server.tool(
        description="Search through stored memories. Call it every time the user asks anything that could "
        "depend on them; score is relevance between 0 and 1.",
        annotations=_READ,
        structured_output=False,
    )
    async def search_memory(
        ctx: Context, query: Annotated[str, Field(description="What to look for.")]
    ) -> str:
        async def go(backend: MemoryBackend, caller: Caller) -> Any:
            found = await backend.search(query, caller.scope({}), top_k=10)
            return {"results": [compact(r) for r in found]}

        return await run(resolve, ctx, go)

    @server.tool(
        description="List all memories of the user, most recent first.",
        annotations=_READ,
        structured_output=False,
    )
    async def list_memories(ctx: Context) -> str:
        async def go(backend: MemoryBackend, caller: Caller) -> Any:
            found = await backend.list_memories(caller.scope({}), top_k=1000)
            return {"results": [compact(r) for r in found["results"]], "total": found["total"]}

        return await run(resolve, ctx, go)

    @server.tool(
        description="Delete specific memories by their ids.", annotations=_DESTROY, structured_output=False
    )
    async def delete_memories(
        ctx: Context, memory_ids: Annotated[list[str], Field(description="Exact memory ids.", min_length=1)]
    ) -> str:
        async def go(backend: MemoryBackend, caller: Caller) -> Any:
            for memory_id in memory_ids:
                await owned(backend, caller, memory_id)
            for memory_id in memory_ids:
                await backend.delete(memory_id)
            return {"message": f"Successfully deleted {len(memory_ids)} memories"}

        return await run(resolve, ctx, go)

    @server.tool(
        description="Delete all memories of the current user, only when the user explicitly asks for it.",
        annotations=_DESTROY,
        structured_output=False,
    )
    async def delete_all_memories(ctx: Context) -> str:
        async def go(backend: MemoryBackend, caller: Caller) -> Any:
            user_id = caller.defaults.get("user_id")
            if not user_id:
                raise ToolFailure("delete_all_memories needs a user: connect with a user id")
            return {
                "message": "Successfully deleted all memories",
                "deleted": await backend.delete_all({"user_id": user_id}),
            }

        return await run(resolve, ctx, go)
