"""OpenMemory's tool names (``--tool-names openmemory``): the same operations, its argument shapes."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from engram.mcp.backend import Caller, MemoryBackend, ToolFailure
from engram.mcp.tools import DESTROY, READ, WRITE, Registrar, Resolver, listing, owned, results


def register_openmemory_tools(server: MCPServer, resolve: Resolver) -> None:
    """add_memories, search_memory, list_memories, delete_memories and delete_all_memories."""
    tool = Registrar(server, resolve)

    @tool(
        WRITE,
        "Add a new memory. Call it whenever the user shares something about themselves (a preference, "
        "fact, decision or plan) or asks you to remember something.",
    )
    async def add_memories(
        backend: MemoryBackend, caller: Caller, text: Annotated[str, Field(description="What to remember.")]
    ) -> Any:
        return results(await backend.add(text, caller.add_scope({})))

    @tool(
        READ,
        "Search through stored memories. Call it every time the user asks anything that could depend on "
        "them; score is relevance between 0 and 1.",
    )
    async def search_memory(
        backend: MemoryBackend, caller: Caller, query: Annotated[str, Field(description="What to look for.")]
    ) -> Any:
        return results((await backend.search(query, caller.scope({}), top_k=10))["results"])

    @tool(READ, "List all memories of the user, most recent first.")
    async def list_memories(backend: MemoryBackend, caller: Caller) -> Any:
        return listing(await backend.list_memories(caller.scope({}), top_k=1000))

    @tool(DESTROY, "Delete specific memories by their ids.")
    async def delete_memories(
        backend: MemoryBackend,
        caller: Caller,
        memory_ids: Annotated[list[str], Field(description="Exact memory ids.", min_length=1)],
    ) -> Any:
        for memory_id in memory_ids:
            await owned(backend, caller, memory_id)
        for memory_id in memory_ids:
            await backend.delete(memory_id)
        return {"message": f"Successfully deleted {len(memory_ids)} memories"}

    @tool(DESTROY, "Delete all memories of the current user, only when the user explicitly asks for it.")
    async def delete_all_memories(backend: MemoryBackend, caller: Caller) -> Any:
        user_id = caller.defaults.get("user_id")
        if not user_id:
            raise ToolFailure("delete_all_memories needs a user: connect with a user id")
        deleted = await backend.delete_all({"user_id": user_id})
        return {"message": "Successfully deleted all memories", "deleted": deleted}
