"""Gradio as segdemo uses it beyond its public API, in one place (the Keras and TensorFlow counterpart is
`segdemo/compat.py`): each function names the version it was checked against, and `tests/test_compat.py` runs it
on the installed version."""

from gradio import mcp

CHECKED_GRADIO = "6.31.0"


async def _outputs_without_progress(self, job):
    result = await mcp.run_sync(job.result)
    return list(result) if isinstance(result, tuple) else [result]


def spread_mcp_outputs():
    """Gradio 6.31's MCP server returns a queued endpoint's outputs (without a progress token) as one value:
    `GradioMCPServer._execute_tool_without_progress` wraps gradio_client's result in a list, so an endpoint
    with several outputs (segment: masks, maps, areas, info) reaches the assistant as one text holding a
    tuple of file dicts instead of one image per output. This spreads a tuple into its outputs, as the
    progress path (`output["data"]`) already does, so each image output becomes MCP image content with its
    URL. Idempotent; called by the UI at launch."""
    if not hasattr(mcp.GradioMCPServer, "_execute_tool_without_progress"):
        raise RuntimeError(f"gradio.mcp.GradioMCPServer has no _execute_tool_without_progress (checked against "
                           f"Gradio {CHECKED_GRADIO}): see segdemo/ui/gradio_compat.py")
    mcp.GradioMCPServer._execute_tool_without_progress = _outputs_without_progress


def name_api_values(demo, api_name, returns):
    """Gradio 6.31's `gr.api` labels an endpoint's values by position ('1st', '2nd': `events.api`'s `ordinal`),
    which is what `view_api()` and the MCP tool show. Label each input after its parameter (as
    `gradio.utils.get_function_params` lists them, the ones Gradio fills itself left out) and the outputs as
    `returns` says."""
    from gradio.utils import get_function_params

    for function in demo.fns.values():
        if function.api_name != api_name:
            continue
        for component, (name, *_) in zip(function.inputs, get_function_params(function.fn), strict=True):
            component.label = name
        for component, label in zip(function.outputs, returns, strict=True):
            component.label = label
        return
    raise ValueError(f"no endpoint {api_name!r} to name the values of")
