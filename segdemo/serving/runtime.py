"""The runtime serving runs on: which device, bfloat16 on CPUs that have it, GPU memory growth, and handing freed
memory back to the OS."""

import contextlib
import ctypes
import gc
import os
import time
from pathlib import Path

from segdemo.compat import LazyModule, import_tensorflow_without_keras

tf = LazyModule("tensorflow")


def start_serving_runtime():
    """What a serving process does once, before its first model: import TensorFlow (without its Keras import:
    Keras only when a model file is read, not on a graph cache hit), let it grow GPU memory, and switch on
    bfloat16 where the CPU has it (it applies to graphs built afterwards). Returns the seconds it took."""
    started = time.perf_counter()
    import_tensorflow_without_keras()
    enable_gpu_memory_growth()
    enable_bf16_inference()
    return time.perf_counter() - started


def describe_device():
    """'GPU: <name>' when TensorFlow sees a GPU, else 'CPU (<n> cores)', with ', bfloat16' when the serving
    graphs run in bfloat16 (see `enable_bf16_inference`)."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', gpus[0].name)}"
    bf16 = tf.config.optimizer.get_experimental_options().get("auto_mixed_precision_onednn_bfloat16")
    return f"CPU ({os.cpu_count()} cores{', bfloat16' if bf16 else ''})"


def release_freed_memory():
    """Hand memory that Python and TensorFlow have freed back to the OS. glibc keeps freed blocks in its
    arenas, so without this a model's tracing and freezing (about 170 MB of temporary graph copies) or one
    12-megapixel request stay in the process's RSS for good. No-op where there is no glibc."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def cpu_supports_bf16():
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), read from /proc/cpuinfo (Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def enable_bf16_inference(force=False):
    """Let oneDNN run the serving graphs' convolutions in bfloat16 where the CPU supports it (graphs built
    after this call). On this project's 2-core CPU it cuts the pets model from about 27 to 22 ms per image;
    the evaluation JSON moves by under 0.002 mIoU (README, Performance). Off with SEGDEMO_PRECISION=float32,
    on a GPU, and on CPUs without native bfloat16, unless `force` (or SEGDEMO_PRECISION=bf16). Call it in
    serving processes only, never where training runs. Returns the precision in use."""
    precision = "bf16" if force else os.environ.get("SEGDEMO_PRECISION", "auto")
    if precision == "float32":
        return "float32"
    if precision != "bf16" and (tf.config.list_physical_devices("GPU") or not cpu_supports_bf16()):
        return "float32"
    tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    return "bf16"


@contextlib.contextmanager
def float32_graphs():
    """Build graphs in float32 inside this block (model export must not inherit the bfloat16 rewrite)."""
    option = "auto_mixed_precision_onednn_bfloat16"
    previous = tf.config.optimizer.get_experimental_options().get(option, False)
    tf.config.optimizer.set_experimental_options({option: False})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({option: previous})


def enable_gpu_memory_growth():
    """Let TensorFlow allocate GPU memory as needed instead of grabbing the whole card."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised
            pass

