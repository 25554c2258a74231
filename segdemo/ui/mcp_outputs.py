"""Gradio 6.31's MCP server returns a queued endpoint's outputs (without a progress token) as one value:
`_execute_tool_without_progress` wraps gradio_client's result in a list, so an endpoint with several outputs
(segment: masks, maps, areas, info) reaches the assistant as one text holding a tuple of file dicts instead of
one image per output. This spreads a tuple into its outputs, as the progress path (`output["data"]`) already
does, so each image output becomes MCP image content with its URL."""

from gradio import mcp


async def _outputs_without_progress(self, job):
    result = await mcp.run_sync(job.result)
    return list(result) if isinstance(result, tuple) else [result]


def spread_multiple_outputs():
    """Apply the fix once (idempotent)."""
    mcp.GradioMCPServer._execute_tool_without_progress = _outputs_without_progress
