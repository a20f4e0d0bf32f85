"""The doors through which other people's programs reach the graph: LangGraph Server
(``server``: the graph and auth; ``webapp``: its extra routes and checks), ``a2r serve``
(``serve``), the OpenAI-compatible API (``openai_api``), MCP (``mcp_tool``), the LangChain tool
(``tool``), how each door runs a graph (``runners``), what a caller may choose
(``run_options``), what every HTTP door checks first (``guard``), and the ``a2r`` command
(``cli``, with ``argtypes`` and ``interrupt``).

The core (``a2r_graph``'s top-level modules and ``nodes/``) imports nothing from here.
"""
