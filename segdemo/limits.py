"""Every limit and default a user meets, in one place: the handlers enforce them, and the UI text, the API
docstrings and README's facts are written from them (tests/test_docs.py reads both)."""

# Images (any front end)
MAX_IMAGE_PIXELS = 40_000_000  # larger images are refused from their header, before they are decoded
DISPLAY_MAX_SIDE = 1600  # outputs shown in the browser are at most this wide/high; downloads are full size

# Uploads
MAX_ZIP_BYTES = 400_000_000  # total uncompressed size accepted from one ZIP (and so the largest upload)
MAX_ZIP_ENTRIES = 2000
MAX_ENTRY_BYTES = 60_000_000  # one file inside a ZIP
MAX_BATCH_IMAGES = 200  # images per batch

# Video files (the Live tab's video and the segment_video API), checked from the container's header before decoding
MAX_VIDEO_BYTES = 200_000_000  # the file
MAX_VIDEO_SECONDS = 60  # its duration
MAX_VIDEO_FRAMES = 1800  # its frames (60 s at 30 frames/s)
MAX_VIDEO_SIDE = 1920  # its long side: Full HD (1920x1080) is accepted, 4K is refused
MAX_VIDEO_PIXELS = 1920 * 1080  # width x height of a frame
VIDEO_OUTPUT_MAX_SIDE = 1280  # the segmented video's frames are at most this wide/high; the masks are full size

# Live webcam
LIVE_MAX_SIDE = 480  # a webcam frame is shrunk to this long side before the model (it arrives at the camera's size)
LIVE_STREAM_EVERY_S = 0.05  # the browser sends a frame this often at most (it waits for the previous answer)
LIVE_TIME_LIMIT_S = 120  # a webcam stream runs this long, then stops (start it again to go on)
LIVE_CONCURRENCY = 2  # webcam streams served at once (2 cores); more wait in the queue
LIVE_SMOOTHING = 0.6  # temporal smoothing: weight of the previous frames' probabilities (when switched on)

# Models
MAX_MODEL_BYTES = 200_000_000  # a model file (or SavedModel folder) served from the command line
MAX_UPLOADED_MODEL_BYTES = 100_000_000  # a model file uploaded in the browser (served for its session only)
MAX_UPLOADED_MODEL_MEMORY = 1_500_000_000  # the memory an uploaded model is estimated to need at its input size

# A model's showcase (segdemo.card --title/--description/--examples, app.py --title/--description)
MAX_TITLE_CHARS = 100  # the page's heading and the browser tab's title
MAX_DESCRIPTION_CHARS = 5000  # the text under the heading (Markdown)
MAX_EXAMPLES = 20  # example images copied beside a model
MAX_EXAMPLE_BYTES = 20_000_000  # one example image or clip

# Fine-tune and retrain
MIN_PAIRS = 2  # at least one to train on and one held out
MAX_PAIRS = 200  # per fine-tune, and in a session's training set
MAX_STEPS = 2000
MAX_BATCH_SIZE = 16
MAX_INPUT_SIZE = 512
MIN_LEARNING_RATE = 1e-6
MAX_LEARNING_RATE = 0.1
DEFAULT_STEPS = 200
DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_BATCH_SIZE = 2  # BatchNorm is frozen, so small batches cost nothing in statistics
SPARE_WORKER_DELAY_S = 60  # the spare worker starts after the first answer, or this long after the model loaded
RETRAIN_STEPS = 100  # a round of the teach loop: fewer steps than a first fine-tune, it starts close


def megapixels(pixels=MAX_IMAGE_PIXELS):
    """'40 megapixels': how UI text and docstrings state an image limit."""
    return f"{pixels / 1e6:.0f} megapixels"


def learning_rate_range():
    """'1e-06 to 0.1': how UI text and docstrings state the learning-rate range."""
    return f"{MIN_LEARNING_RATE:g} to {MAX_LEARNING_RATE:g}"
