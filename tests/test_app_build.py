"""The whole app builds in process from a configuration, without launching (the fast loop's check that every
tab's wiring holds), with its documented endpoints."""

from segdemo.app.startup import STARTUP
from segdemo.config import AppConfig
from segdemo.serving import registry


def test_the_app_builds_with_every_endpoint():
    from segdemo.ui import build_demo

    previous = registry.current_config()
    try:
        demo = build_demo(AppConfig())
        names = {function.api_name for function in demo.fns.values()}
        assert {"segment", "cutout", "segment_batch", "compare", "segment_video", "finetune", "retrain",
                "check_pairs", "add_training_pair", "export_model", "upload_model"} <= names, names
        assert set(registry.served_models()) == {"pets", "street", "membranes"}
    finally:
        registry.configure(previous)
        STARTUP.model_name = None  # build_demo made requests wait for a start-up that launch() would run
        STARTUP.done.set()


def test_every_value_of_every_endpoint_says_what_it_is():
    """view_api() and the MCP tools read as a description: no Gradio placeholder names (value_18, 1st)."""
    import re

    from segdemo.ui import build_demo

    previous = registry.current_config()
    try:
        info = build_demo(AppConfig()).get_api_info()
        named = {name: [value["label"] for key in ("parameters", "returns") for value in endpoint[key]]
                 for name, endpoint in info["named_endpoints"].items()}
        placeholder = re.compile(r"value_\d+|\d+(st|nd|rd|th)")
        unnamed = {name: [label for label in labels if not label or placeholder.fullmatch(label)]
                   for name, labels in named.items()}
        assert not any(unnamed.values()), unnamed
        assert named["/retrain"] == ["model_name", "steps", "learning_rate", "batch_size",
                                     "status while training, then the metrics (JSON)"]
        assert "Model, device and timings" in named["/segment"]
    finally:
        registry.configure(previous)
        STARTUP.model_name = None
        STARTUP.done.set()
