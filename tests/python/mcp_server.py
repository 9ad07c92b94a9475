"""A small MCP server (streamable HTTP, from the pinned `mcp` package) for the invoke tests.

Usage: mcp_server.py PORT — serves http://127.0.0.1:PORT/mcp until killed.
Tools: `add(a, b)` returns the sum; `shout(text)` returns the text upper-cased;
`fail(reason)` always raises (an error result).
"""

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("engram-test-tools")


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@server.tool()
def shout(text: str) -> str:
    """Returns the text in upper case."""
    return text.upper()


@server.tool()
def fail(reason: str) -> str:
    """Always fails with the given reason."""
    raise ValueError(reason)


if __name__ == "__main__":
    port = int(sys.argv[1])
    server.run("streamable-http", host="127.0.0.1", port=port)
