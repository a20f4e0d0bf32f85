"""The doors through which other people's programs reach the graph: LangGraph Server
(``server``: the graph and auth; ``webapp``: its extra routes and checks), ``a2r serve``
(``serve``), the OpenAI-compatible API (``openai_api``), MCP (``mcp_tool``), the LangChain tool
(``tool``), how each door runs a graph (``runners``), what a caller may choose
(``run_options``) and what every HTTP door checks first (``guard``).

The core (``a2r_graph``'s top-level modules and ``nodes/``) imports nothing from here.
"""
