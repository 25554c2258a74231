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
        assert {"segment", "segment_batch", "compare", "segment_video", "finetune", "retrain", "check_pairs",
                "add_training_pair", "export_model", "upload_model"} <= names, names
        assert set(registry.served_models()) == {"pets", "street", "membranes"}
    finally:
        registry.configure(previous)
        STARTUP.model_name = None  # build_demo made requests wait for a start-up that launch() would run
        STARTUP.done.set()
