"""The Live tab's core without the web app: a video file through the pets model (frame count and rate kept, every
frame's mask equal to `Segmenter.predict` on the same decoded frame, an H.264 yuv420p mp4 of even size), bad
videos refused with a message from the header, webcam frames (shrunk, segmented, smoothed, counted) and the
virtual background (one class over a plain colour or a blurred frame). The clips are written here with PyAV from
the example photos."""

import io
import json
import zipfile
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image, ImageFilter

from segdemo.errors import InputError
from segdemo.serving import video_io
from segdemo.serving.cutout import PLAIN, VirtualBackground
from segdemo.serving.live import LiveStream, live_frame, shrink_frame, stats_line
from segdemo.serving.registry import get_segmenter
from segdemo.serving.video import MASK, OVERLAY, SIDE_BY_SIDE, VIRTUAL_BACKGROUND, segment_video
from tests.helpers import EXAMPLES

av = pytest.importorskip("av")

RATE = Fraction(25, 2)  # 12.5 frames/s: a rate that is not a whole number survives too


def photo(name, size):
    return np.asarray(Image.open(EXAMPLES / name).convert("RGB").resize(size))


def clip_frames(count, size):
    """`count` frames: the cat drifting right, then the coffee cup (no pet)."""
    cat, cup = photo("chelsea_cat.png", size), photo("coffee_cup.png", size)
    return [np.roll(cat, 4 * index, axis=1) if index < count // 2 else cup for index in range(count)]


def write_clip(path, frames, rate=RATE, pix_fmt="yuv420p", rotation=None, audio=False, pts=None):
    """An H.264 clip of `frames` (RGB arrays). `pts`: each frame's timestamp in 1/1000 s (variable rate)."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = {"preset": "ultrafast"}
        if pts is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        sound = container.add_stream("aac", rate=8000) if audio else None
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = index if pts is None else pts[index]
            if pts is not None:
                frame.time_base = Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if sound is not None:
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            samples.sample_rate, samples.pts = 8000, 0
            container.mux(sound.encode(samples))
            container.mux(sound.encode())
    return str(path)


def decoded_frames(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def zip_masks(path):
    with zipfile.ZipFile(path) as archive:
        names = sorted(name for name in archive.namelist() if name.startswith("masks/"))
        masks = [np.asarray(Image.open(io.BytesIO(archive.read(name)))) for name in names]
        return masks, json.loads(archive.read("classes.json"))


@pytest.fixture(scope="module")
def pets():
    return get_segmenter("pets")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", clip_frames(12, (160, 96)))


def test_video_keeps_frames_and_rate_and_each_mask_is_the_frames_segmentation(clip, pets, tmp_path):
    result = segment_video(clip, pets, tmp_path, OVERLAY)
    inputs = decoded_frames(clip)
    assert result.frames == len(inputs) == 12 and result.fps == pytest.approx(12.5)
    masks, about = zip_masks(result.masks_path)
    assert len(masks) == 12 and about["classes"] == {"0": "pet", "1": "background", "2": "border"}
    for frame, mask in zip(inputs, masks):
        expected = pets.predict(frame).labels
        assert mask.shape == expected.shape == (96, 160)
        assert np.mean(mask != expected) < 0.001  # the batch graph against the single one: float rounding only
    pet = result.classes.index("pet")
    assert result.shares[0, pet] > 0.4 and result.shares[-1, pet] < 0.1  # the cat, then the cup
    np.testing.assert_allclose(result.shares.sum(axis=1), 1.0, atol=1e-6)
    assert len(result.share_rows()) == 12 * 3
    with av.open(result.video_path) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (160, 96)
        assert stream.average_rate == RATE and not container.streams.audio
        assert len(list(container.decode(stream))) == 12
    with open(result.video_path, "rb") as handle:
        head = handle.read(4096)
    assert head.find(b"moov") < head.find(b"mdat") or b"mdat" not in head  # faststart: the index first


def test_output_kinds_side_by_side_and_mask(clip, pets, tmp_path):
    side = segment_video(clip, pets, tmp_path, SIDE_BY_SIDE)
    mask = segment_video(clip, pets, tmp_path / "m" if (tmp_path / "m").mkdir() is None else None, MASK)
    assert side.output_size == (320, 96) and mask.output_size == (160, 96)
    first = decoded_frames(mask.video_path)[0]
    colours = {tuple(colour) for colour in first.reshape(-1, 3)[::7]}
    near_pet = [c for c in colours if np.abs(np.subtract(c, pets.palette[0], dtype=int)).max() < 40]
    assert near_pet  # the mask video shows the pet's colour (H.264 shifts colours a little)
    with pytest.raises(InputError, match="choose one of"):
        segment_video(clip, pets, tmp_path, "sepia")


def test_odd_size_444_and_rotated_phone_video(pets, tmp_path):
    frames = clip_frames(4, (161, 97))
    odd = segment_video(write_clip(tmp_path / "odd.mp4", frames, pix_fmt="yuv444p"), pets, tmp_path, OVERLAY)
    assert odd.output_size == (160, 96) and odd.size == (161, 97) and odd.frames == 4
    assert zip_masks(odd.masks_path)[0][0].shape == (97, 161)  # the masks stay full size
    rotated = segment_video(write_clip(tmp_path / "phone.mp4", clip_frames(4, (160, 96)), rotation=-90), pets,
                            tmp_path, OVERLAY)
    assert rotated.size == (96, 160) and rotated.output_size == (96, 160)
    assert any("turned 90°" in note for note in rotated.notes)
    assert zip_masks(rotated.masks_path)[0][0].shape == (160, 96)


def test_audio_is_dropped_and_said_so_and_variable_rate_is_named(pets, tmp_path):
    with_audio = segment_video(write_clip(tmp_path / "a.mp4", clip_frames(4, (64, 48)), audio=True), pets, tmp_path)
    assert any("audio track is dropped" in note for note in with_audio.notes)
    with av.open(with_audio.video_path) as container:
        assert not container.streams.audio
    pts = [0, 40, 80, 300, 340, 700, 740, 780]  # bursts and gaps
    vfr = segment_video(write_clip(tmp_path / "v.mp4", clip_frames(8, (64, 48)), rate=25, pts=pts), pets,
                        tmp_path)
    assert vfr.frames == 8 and any("variable frame rate" in note for note in vfr.notes)


def bad(path, data):
    path.write_bytes(data)
    return str(path)


def test_bad_videos_get_a_message(clip, pets, tmp_path, monkeypatch):
    good = open(clip, "rb").read()
    cases = {
        "not a readable video": bad(tmp_path / "notes.mp4", b"plain text, not a video" * 10),
        "is empty": bad(tmp_path / "empty.mp4", b""),
        "not a readable video ": bad(tmp_path / "cut.mp4", good[: len(good) // 3]),  # no index: moov at the end
        "no video frames": write_audio_only(tmp_path / "sound.mp4"),
        "4K or larger": write_clip(tmp_path / "uhd.mp4", [np.zeros((2160, 3840, 3), np.uint8)] * 2),
        "No video given": str(tmp_path / "missing.mp4"),
    }
    for expected, path in cases.items():
        with pytest.raises(InputError, match=expected.strip()) as error:
            segment_video(path, pets, tmp_path)
        assert "accepted" in str(error.value) or "upload" in str(error.value)
    monkeypatch.setattr(video_io, "MAX_VIDEO_SECONDS", 0.3)
    with pytest.raises(InputError, match="lasts 1 s"):
        segment_video(clip, pets, tmp_path)
    monkeypatch.setattr(video_io, "MAX_VIDEO_BYTES", 1000)
    with pytest.raises(InputError, match="MB"):
        segment_video(clip, pets, tmp_path)


def write_audio_only(path):
    with av.open(str(path), "w", format="mp4") as container:
        sound = container.add_stream("aac", rate=8000)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        samples.sample_rate, samples.pts = 8000, 0
        container.mux(sound.encode(samples))
        container.mux(sound.encode())
    return str(path)


def test_zero_frames_and_truncated_faststart(pets, tmp_path):
    empty = tmp_path / "zero.mp4"
    with av.open(str(empty), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()  # a header, no frames
    with pytest.raises(InputError, match="no video frames"):
        segment_video(str(empty), pets, tmp_path)
    frames = list(np.random.default_rng(0).integers(0, 256, (30, 96, 160, 3), dtype=np.uint8))  # large packets
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    data = whole.read_bytes()
    cut = segment_video(bad(tmp_path / "cut.mp4", data[: len(data) // 2]), pets, tmp_path)
    assert 0 < cut.frames < 30
    assert any("damaged or truncated" in note and "of the 30" in note for note in cut.notes)
    assert len(zip_masks(cut.masks_path)[0]) == cut.frames


def jpeg_data_url(array):
    import base64

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_webcam_frames_are_shrunk_segmented_and_counted(pets):
    cat = photo("chelsea_cat.png", (1280, 960))  # a camera at 1280x960
    assert shrink_frame(jpeg_data_url(cat)).shape == (360, 480, 3)
    stream = LiveStream()
    first = live_frame(jpeg_data_url(cat), pets, stream, opacity=0.5)
    assert first.overlay.shape == first.mask.shape == (360, 480, 3)
    assert np.mean(first.labels == 0) > 0.3  # the pet
    cup = live_frame(jpeg_data_url(photo("coffee_cup.png", (640, 480))), pets, stream)
    assert np.mean(cup.labels == 0) < 0.1 and cup.stats["frames"] == 2 and cup.stats["fps"] > 0
    assert "frames/s" in stats_line(cup.stats, False, 120) and "2 frames" in stats_line(cup.stats, False, 120)
    with pytest.raises(InputError, match="could not be decoded"):
        live_frame("data:image/jpeg;base64,AAAA", pets, stream)


def far_from(mask, margin):
    """Pixels at least `margin` px (a square) from every True pixel of `mask`: beyond the soft edge and H.264's
    chroma blur at a colour boundary."""
    grown = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(2 * margin + 1))
    return np.asarray(grown) == 0


def test_webcam_virtual_background_keeps_the_pet_over_a_plain_colour(pets):
    cat = photo("chelsea_cat.png", (320, 240))
    result = live_frame(cat, pets, LiveStream(), virtual=VirtualBackground(0, PLAIN, (255, 0, 255)))
    assert result.overlay is None and result.view is result.background and result.background.shape == cat.shape
    pet = result.labels == 0
    assert 0.3 < pet.mean() < 0.9
    assert (result.background[far_from(pet, 6)] == (255, 0, 255)).all()  # no JPEG, no H.264: exact
    assert np.array_equal(result.background[far_from(~pet, 6)], cat[far_from(~pet, 6)])  # the pet, untouched
    with_overlay = live_frame(cat, pets, LiveStream())
    assert with_overlay.background is None and with_overlay.view is with_overlay.overlay


def test_video_virtual_background_defaults_to_the_shown_class_over_a_blur(clip, pets, tmp_path):
    result = segment_video(clip, pets, tmp_path, VIRTUAL_BACKGROUND)
    assert result.frames == 12 and result.output_size == (160, 96) and result.kind == VIRTUAL_BACKGROUND
    assert "the class 'pet' kept (soft edge) over a blurred copy of the frame" in result.notes[0]
    frames, inputs = decoded_frames(result.video_path), decoded_frames(clip)
    masks, _ = zip_masks(result.masks_path)
    first_pet = masks[0] == 0
    inside = far_from(~first_pet, 6)
    assert inside.sum() > 500
    assert np.abs(frames[0][inside].astype(int) - inputs[0][inside]).mean() < 4  # the cat as it is (H.264 only)
    assert np.abs(frames[-1].astype(int) - inputs[-1]).mean() > 4  # the cup (no pet): all blurred


def test_webcam_smoothing_follows_slowly(pets):
    cat, cup = photo("chelsea_cat.png", (320, 240)), photo("coffee_cup.png", (320, 240))
    smooth, plain = LiveStream(), LiveStream()
    for _ in range(3):
        live_frame(cat, pets, smooth, smooth=True, smoothing=0.8)
    after_cut = live_frame(cup, pets, smooth, smooth=True, smoothing=0.8)
    unsmoothed = live_frame(cup, pets, plain)
    assert np.mean(after_cut.labels == 0) > np.mean(unsmoothed.labels == 0) + 0.2  # the cat lingers


def test_segment_video_api_keeps_frames_rate_and_each_frames_mask(app_url, clip, tmp_path):
    """Each frame's mask in the ZIP is what the server's `segment` gives that decoded frame (the server may run
    the model in bfloat16: compared with the server, not with this process)."""
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    video, masks_zip, shares, note = client.predict(handle_file(clip), "pets", SIDE_BY_SIDE,
                                                    api_name="/segment_video")
    video = video["video"] if isinstance(video, dict) else video
    with av.open(video) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert stream.average_rate == RATE and len(list(container.decode(stream))) == 12
        assert (stream.codec_context.width, stream.codec_context.height) == (320, 96)  # input | mask
    masks, _ = zip_masks(masks_zip)
    for index, (frame, mask) in enumerate(zip(decoded_frames(clip), masks, strict=True)):
        Image.fromarray(frame).save(tmp_path / f"frame{index}.png")
        *_, class_index = client.predict(handle_file(str(tmp_path / f"frame{index}.png")), "pets",
                                         api_name="/segment")
        assert np.mean(mask != np.asarray(Image.open(class_index))) < 0.001  # batch against single: rounding only
    assert shares["columns"] == ["time_s", "class", "share"] and len(shares["data"]) == 12 * 3
    first_pet = next(share for time_s, name, share in shares["data"] if name == "pet")
    assert first_pet > 0.4 and "12 frames" in note


def test_segment_video_api_refuses_bad_videos_and_keeps_serving(app_url, clip, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    text = bad(tmp_path / "holiday.mp4", b"not a video at all" * 100)
    with pytest.raises(Exception, match="not a readable video"):
        client.predict(handle_file(text), "pets", OVERLAY, api_name="/segment_video")
    with pytest.raises(Exception, match="input | mask"):  # the choices are listed
        client.predict(handle_file(clip), "pets", "sepia", api_name="/segment_video")
    *_, note = client.predict(handle_file(clip), "pets", MASK, api_name="/segment_video")
    assert "12 frames" in note


def test_segment_video_api_virtual_background_plain_colour_and_blur(app_url, clip):
    """Outside the pet (by the server's own masks), the plain-colour video is that colour up to H.264's
    rounding, and the blurred one differs from the input; the pet stays as it was. Parameters appended after
    output_kind: the calls above, without them, keep working."""
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    video, masks_zip, _, note = client.predict(handle_file(clip), "pets", VIRTUAL_BACKGROUND, "pet", "plain",
                                               "#ff00ff", api_name="/segment_video")
    assert "'pet' kept" in note and "rgb(255, 0, 255)" in note
    masks, _ = zip_masks(masks_zip)
    frames, inputs = decoded_frames(video["video"] if isinstance(video, dict) else video), decoded_frames(clip)
    assert len(frames) == len(masks) == 12
    outside = [far_from(mask == 0, 6) for mask in masks]
    assert outside[0].sum() > 200 and outside[-1].mean() > 0.6  # around the cat; most of the cup frame
    for frame, where in zip(frames, outside, strict=True):
        error = np.abs(frame[where].astype(int) - (255, 0, 255))
        assert np.median(error) <= 3 and np.percentile(error, 99) <= 20, (np.median(error), error.max())
    video, masks_zip, _, note = client.predict(handle_file(clip), "pets", VIRTUAL_BACKGROUND, "", "blur",
                                               api_name="/segment_video")
    assert "'pet' kept" in note and "blurred copy" in note
    masks, _ = zip_masks(masks_zip)
    frames = decoded_frames(video["video"] if isinstance(video, dict) else video)
    for frame, mask, original in zip(frames, masks, inputs, strict=True):
        outside, inside = far_from(mask == 0, 6), far_from(mask != 0, 6)
        assert np.abs(frame[outside].astype(int) - original[outside]).mean() > 4  # blurred
        if inside.sum() > 100:
            assert np.abs(frame[inside].astype(int) - original[inside]).mean() < 4  # the pet as it was
