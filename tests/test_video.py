"""Video files, TIFF stacks and frame folders (nlmeans.video) and their command line.

Tiny clips are made with PyAV itself; searches are small so the file runs in seconds.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

import nlmeans
from nlmeans.io import write_image
from nlmeans.synthetic import make_sequence, make_volume_sequence
from nlmeans.video import SequenceError, SequenceWriter, open_sequence
from nlmeans_cli.main import app

av = pytest.importorskip("av")

FAST = ["--patch-size", "3", "--patch-distance", "2", "--temporal-radius", "1"]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _clean(n=6, shape=(40, 48), colour=True, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0] * 4 // 3, : shape[1] * 4 // 3]
    base = 0.5 + 0.35 * np.sin(x / 4.0) * np.cos(y / 6.0)
    image = np.stack([base, base[::-1], base[:, ::-1]], axis=-1) if colour else base
    clip = make_sequence(image, n, seed=seed, motion="pan", max_speed=1.0, frame_shape=shape)
    noisy = clip + 0.08 * rng.standard_normal(clip.shape)
    return np.clip(np.rint(noisy * 255), 0, 255).astype(np.uint8)


def _write_video(path, frames, codec="libx264", pix_fmt="yuv420p", rate=Fraction(12)):
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        fmt = "rgb24" if frames.ndim == 4 else "gray"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format=fmt)):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return Path(path)


def _read_all(path):
    source = open_sequence(path)
    return source, np.stack(list(source.frames()))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    frames = _clean()
    return {
        "frames": frames,
        "mp4": _write_video(folder / "clip.mp4", frames),
        "mkv": _write_video(folder / "clip.mkv", frames, "ffv1", "yuv444p"),
        "avi": _write_video(folder / "clip.avi", frames, "rawvideo", "bgr24"),
        "mov": _write_video(folder / "clip.mov", frames, "mpeg4"),
    }


@pytest.mark.parametrize("kind", ["mp4", "mkv", "avi", "mov"])
def test_cli_denoises_video_keeping_container_codec_rate_and_count(clips, tmp_path, kind):
    src = clips[kind]
    before = src.read_bytes()
    dst = tmp_path / f"out.{kind}"
    result = invoke("denoise", src, "-o", dst, *FAST)
    assert result.exit_code == 0, result.output + result.stderr
    assert result.stdout.strip() == str(dst)
    source, original = _read_all(src)
    out, frames = _read_all(dst)
    assert (out.codec, out.n_frames, out.fps) == (source.codec, source.n_frames, source.fps)
    assert frames.shape == original.shape and frames.dtype == np.uint8
    assert not np.array_equal(frames, original)  # something was denoised
    assert src.read_bytes() == before
    assert not list(tmp_path.glob(".*partial*"))


def test_lossless_output_is_the_library_result(clips, tmp_path):
    dst = tmp_path / "out.mkv"
    result = invoke("denoise", clips["avi"], "-o", dst, "--lossless", "--sigma", "0.08", *FAST)
    assert result.exit_code == 0, result.stderr
    out, frames = _read_all(dst)
    assert out.codec == "ffv1"
    _, original = _read_all(clips["avi"])  # rawvideo: exactly the frames written
    expected = nlmeans.denoise_sequence(
        original, channel_axis=-1, sigma=0.08, patch_size=3, patch_distance=2, temporal_radius=1
    )
    np.testing.assert_array_equal(frames, expected)


def test_tiff_stack_and_frame_folder(tmp_path):
    frames = _clean(5, colour=False)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, frames)
    result = invoke("denoise", stack, *FAST, "--sigma", "0.08")
    assert result.exit_code == 0, result.stderr
    out = tifffile.imread(tmp_path / "stack_denoised.tif")
    expected = nlmeans.denoise_sequence(
        frames, sigma=0.08, patch_size=3, patch_distance=2, temporal_radius=1
    )
    np.testing.assert_array_equal(out, expected)

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        write_image(folder / f"f{i:03d}.png", f)
    result = invoke("denoise", folder, "--sequence", "-o", tmp_path / "clean_frames", *FAST)
    assert result.exit_code == 0, result.stderr
    written = sorted((tmp_path / "clean_frames").iterdir())
    assert [p.name for p in written] == [f"f{i:03d}.png" for i in range(5)]  # the input's names
    again = invoke(
        "denoise", folder, "--sequence", "-o", tmp_path / "clean_frames", "--force", *FAST
    )
    assert again.exit_code == 0, again.stderr  # an earlier output of this folder is replaced
    assert sorted(p.name for p in (tmp_path / "clean_frames").iterdir()) == [
        p.name for p in written
    ]
    # names that would clash once their suffixes go: numbered frames instead
    clash = tmp_path / "clash"
    clash.mkdir()
    write_image(clash / "a.png", frames[0])
    write_image(clash / "a.tif", frames[1])
    write_image(clash / "b.png", frames[2])
    result = invoke("denoise", clash, "--sequence", "-o", tmp_path / "clash_out", *FAST)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "clash_out").iterdir()) == [
        f"frame_{i:06d}.png" for i in range(3)
    ]
    # A folder of frames to a lossless video keeps the frames too.
    result = invoke("denoise", folder, "--sequence", "-o", tmp_path / "v.mkv", "--lossless", *FAST)
    assert result.exit_code == 0, result.stderr
    out, decoded = _read_all(tmp_path / "v.mkv")
    assert out.n_frames == 5 and decoded.shape == frames.shape


def test_tiff_stacks_skip_thumbnails_and_read_planar_rgb(tmp_path):
    rng = np.random.default_rng(7)
    gray = (rng.random((4, 24, 32)) * 255).astype(np.uint8)
    with tifffile.TiffWriter(tmp_path / "thumb.tif") as tif:
        for frame in gray:
            tif.write(frame)
        tif.write(gray[0, ::4, ::4], subfiletype=1)  # a reduced-resolution preview
    source = open_sequence(tmp_path / "thumb.tif")
    assert source.n_frames == 4
    np.testing.assert_array_equal(np.stack(list(source.frames())), gray)
    rgb = (rng.random((3, 24, 32, 3)) * 255).astype(np.uint8)
    with tifffile.TiffWriter(tmp_path / "planar.tif") as tif:
        for frame in rgb:  # stored plane by plane
            tif.write(np.moveaxis(frame, -1, 0), photometric="rgb", planarconfig="separate")
    source = open_sequence(tmp_path / "planar.tif")
    assert source.frame_shape == (24, 32, 3)
    np.testing.assert_array_equal(np.stack(list(source.frames())), rgb)


def test_bad_inputs_give_one_line_and_leave_nothing(clips, tmp_path):
    # Truncated Matroska: the header's duration says more frames than there are.
    data = clips["mkv"].read_bytes()
    truncated = tmp_path / "cut.mkv"
    truncated.write_bytes(data[: len(data) // 2])
    # Its last frame cut (the packet count is one short of the duration, and
    # the packets end a frame early: not rounding).
    last_cut = tmp_path / "cut_last.mkv"
    last_cut.write_bytes(data[:-300])
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 50)
    cut_mp4 = tmp_path / "cut.mp4"
    cut_mp4.write_bytes(clips["mp4"].read_bytes()[:-200])
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_image(folder / "a.png", np.zeros((16, 16), np.uint8))
    write_image(folder / "b.png", np.zeros((16, 20), np.uint8))
    cases = [
        ([truncated], "truncated"),
        ([last_cut], "truncated: 5 frames where its header says 6"),
        ([junk], "cannot read it as a video"),
        ([cut_mp4], "truncated, corrupt or not a video"),
        ([folder, "--sequence"], "different sizes"),
        ([clips["mp4"], "--temporal-radius", "9"], "larger than the clip"),
        ([clips["avi"], "-o", tmp_path / "raw.mp4"], "cannot hold rawvideo"),
        ([clips["mp4"], "-o", tmp_path / "x.mp4", "--lossless"], "FFV1 in Matroska"),
        ([clips["mp4"], "--noise", "poisson-gaussian"], "sequences take Gaussian noise"),
        ([clips["mp4"], "--method", "neural"], "patch_size does not apply to method='neural'"),
    ]
    for args, message in cases:
        before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
        result = invoke("denoise", *args, "-p", "3", "-r", "2")
        assert result.exit_code in (1, 2), (args, result.output)
        assert message in " ".join(result.stderr.split()), (args, result.stderr)
        assert "Traceback" not in result.stderr
        after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
        assert after == before, args  # nothing written, nothing changed


def test_existing_output_needs_force(clips, tmp_path):
    dst = tmp_path / "o.mkv"
    dst.write_bytes(b"keep")
    result = invoke("denoise", clips["mkv"], "-o", dst, *FAST)
    assert result.exit_code == 1 and "already exists" in result.stderr
    assert dst.read_bytes() == b"keep"
    result = invoke("denoise", clips["mkv"], "-o", dst, "--force", *FAST)
    assert result.exit_code == 0 and open_sequence(dst).n_frames == 6


def test_video_outputs_keep_depth_levels_and_odd_sizes(tmp_path):
    """--lossless keeps 16-bit frames 16-bit (it wrote 8 bits); gray frames
    keep their levels in H.264 (read as limited range, they were stretched:
    y = 1.16 x - 18); odd-sized colour frames encode (4:2:0 refused them)."""
    deep = (_clean(5, colour=False).astype(np.uint16) * 257)[:, :, :47]
    tifffile.imwrite(tmp_path / "deep.tif", deep)
    result = invoke(
        "denoise", tmp_path / "deep.tif", "-o", tmp_path / "deep.mkv", "--lossless", *FAST
    )
    assert result.exit_code == 0, result.stderr
    source, decoded = _read_all(tmp_path / "deep.mkv")
    expected = nlmeans.denoise_sequence(deep, patch_size=3, patch_distance=2, temporal_radius=1)
    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded, expected)

    gray = tmp_path / "gray"
    gray.mkdir()
    frames = _clean(5, shape=(41, 47), colour=False)
    for i, frame in enumerate(frames):
        write_image(gray / f"g{i}.png", frame)
    colour = tmp_path / "colour"
    colour.mkdir()
    for i, frame in enumerate(_clean(5, shape=(41, 47))):
        write_image(colour / f"c{i}.png", frame)
    for folder in (gray, colour):
        for out in ("v.mp4", "png"):
            result = invoke(
                "denoise", folder, "--sequence", "-o", tmp_path / f"{folder.name}_{out}", *FAST
            )
            assert result.exit_code == 0, result.stderr
        _, video = _read_all(tmp_path / f"{folder.name}_v.mp4")
        _, lossless = _read_all(tmp_path / f"{folder.name}_png")
        if video.shape != lossless.shape:  # gray frames come back from H.264 as RGB
            video = video[..., 0]
        slope, offset = np.polyfit(lossless.ravel().astype(float), video.ravel(), 1)
        assert abs(slope - 1) < 0.05 and abs(offset) < 6, (folder.name, slope, offset)


def test_force_never_replaces_a_folder_holding_the_input_or_other_files(clips, tmp_path):
    """Replacing a folder output removes the folder whole: only one that holds
    nothing but an earlier output's frames may go."""
    stack = tmp_path / "work" / "stack.tif"
    stack.parent.mkdir()
    tifffile.imwrite(stack, clips["frames"][:4])
    (stack.parent / "thesis.txt").write_text("mine")
    result = invoke("denoise", stack, "-o", stack.parent, "--force", *FAST)
    assert result.exit_code == 1 and "the input" in result.stderr
    assert sorted(p.name for p in stack.parent.iterdir()) == ["stack.tif", "thesis.txt"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    result = invoke("denoise", stack, "-o", other, "--force", *FAST)
    assert result.exit_code == 1 and "not frames that this output writes" in result.stderr
    assert (other / "notes.txt").read_text() == "mine"
    # a folder that only has a frame's name is not a frame
    (other / "notes.txt").unlink()
    (other / "frame_000000.png").mkdir()
    (other / "frame_000000.png" / "keep.txt").write_text("mine")
    result = invoke("denoise", stack, "-o", other, "--force", *FAST)
    assert result.exit_code == 1 and "not frames that this output writes" in result.stderr
    assert (other / "frame_000000.png" / "keep.txt").read_text() == "mine"
    # An earlier folder output is replaced, as --force says.
    out = tmp_path / "out"
    for _ in range(2):
        result = invoke("denoise", stack, "-o", out, "--force", *FAST)
        assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:06d}.png" for i in range(4)]


def test_a_batch_of_images_videos_and_stacks_each_takes_its_own_path(clips, tmp_path):
    """Globs and folders reach videos and stacks too; still images stay images."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "clip.mkv").write_bytes(clips["mkv"].read_bytes())
    tifffile.imwrite(src / "stack.tif", clips["frames"][:5, ..., 0])
    tifffile.imwrite(src / "one.tif", clips["frames"][:1, ..., 0])  # a one-frame stack
    write_image(src / "still.png", clips["frames"][0])
    out = tmp_path / "out"
    result = invoke("denoise", src / "*", "--out-dir", out, *FAST)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "clip_denoised.mkv", "one_denoised.tif", "stack_denoised.tif", "still_denoised.png"
    ]  # fmt: skip
    assert open_sequence(out / "stack_denoised.tif").n_frames == 5
    assert tifffile.imread(out / "one_denoised.tif").shape == clips["frames"].shape[1:3]
    assert open_sequence(out / "clip_denoised.mkv").n_frames == 6
    # A folder given whole: the same split (earlier outputs named *_denoised are skipped).
    again = invoke("denoise", src, "--out-dir", tmp_path / "again", *FAST)
    assert again.exit_code == 0, again.stderr
    assert len(list((tmp_path / "again").iterdir())) == 4


def test_a_sequence_refused_in_a_batch_does_not_stop_the_images(clips, tmp_path):
    """--noise auto is for images: the video in the folder fails by name, the
    photograph is denoised; two stacks with one output name: the second fails."""
    photos = tmp_path / "photos"
    photos.mkdir()
    write_image(photos / "p.png", clips["frames"][0])
    (photos / "notes.mp4").write_bytes(clips["mp4"].read_bytes())
    result = invoke("denoise", photos, "--noise", "auto", "--out-dir", tmp_path / "out")
    assert result.exit_code == 1
    assert "notes.mp4: sequences take Gaussian noise" in " ".join(result.stderr.split())
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["p_denoised.png"]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        tifffile.imwrite(tmp_path / name / "stack.tif", clips["frames"][:5, ..., 0])
    result = invoke("denoise", tmp_path / "a", tmp_path / "b", "--out-dir", tmp_path / "o2", *FAST)
    assert result.exit_code == 1 and "would also be written for" in result.stderr
    expected = nlmeans.denoise_sequence(
        clips["frames"][:5, ..., 0], patch_size=3, patch_distance=2, temporal_radius=1
    )
    assert tifffile.imread(tmp_path / "o2" / "stack_denoised.tif").shape == expected.shape


def test_ensemble_is_refused_for_sequences(clips, tmp_path):
    """--ensemble is an image option: a video alone is a usage error, a video
    in a batch fails by name while the photograph is denoised."""
    result = invoke(
        "denoise", clips["mp4"], "--method", "neural", "--ensemble", "-o", tmp_path / "v.mp4"
    )
    assert result.exit_code == 2 and "--ensemble applies to images" in " ".join(
        result.output.split()
    )
    assert not (tmp_path / "v.mp4").exists()
    photos = tmp_path / "photos"
    photos.mkdir()
    write_image(photos / "p.png", clips["frames"][0])
    (photos / "notes.mp4").write_bytes(clips["mp4"].read_bytes())
    result = invoke(
        "denoise", photos, "--method", "neural", "--ensemble", "--out-dir", tmp_path / "out"
    )
    assert result.exit_code == 1 and "notes.mp4: --ensemble applies to images" in " ".join(
        result.stderr.split()
    )
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["p_denoised.png"]


def test_sequence_option_refuses_a_still_image_before_writing(clips, tmp_path):
    still = tmp_path / "still.png"
    write_image(still, clips["frames"][0])
    result = invoke("denoise", still, "--sequence", "--out-dir", tmp_path / "new")
    assert result.exit_code == 1 and "not a sequence" in result.stderr
    assert not (tmp_path / "new").exists()
    result = invoke("denoise", clips["mkv"], "--out-dir", tmp_path / "new2", "-o", tmp_path / "x")
    assert result.exit_code == 2
    result = invoke("denoise", clips["mkv"], "-o", tmp_path / "new3" / "x.png", *FAST)
    assert result.exit_code != 0 and not (tmp_path / "new3").exists()


def test_matroska_whose_audio_outlasts_the_video_is_whole(tmp_path):
    """The container's duration spans the audio too: it must not make an intact
    video look one frame short."""
    path = tmp_path / "long_audio.mkv"
    with av.open(str(path), "w") as container:
        video = container.add_stream("ffv1", rate=10)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv444p"
        audio = container.add_stream("pcm_s16le", rate=8000)
        for i in range(10):
            pixels = np.full((32, 32, 3), 20 * i, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        sound = av.AudioFrame.from_ndarray(
            np.zeros((1, 8800), np.int16), format="s16", layout="mono"
        )
        sound.sample_rate = 8000  # 1.1 s of audio for 1.0 s of video
        for packet in [*audio.encode(sound), *audio.encode(None)]:
            container.mux(packet)
    assert open_sequence(path).n_frames == 10


def test_writer_discards_incomplete_output(clips, tmp_path):
    source = open_sequence(clips["mkv"])
    dst = tmp_path / "partial.mkv"
    with pytest.raises(SequenceError, match="3 of 6 frames"):
        with SequenceWriter(dst, like=source) as writer:
            for frame in list(source.frames())[:3]:
                writer.write(frame)
    assert not dst.exists() and not list(tmp_path.iterdir())


def test_compare_on_a_clip(clips, tmp_path):
    stack = tmp_path / "clean.tif"
    tifffile.imwrite(stack, clips["frames"][:5])
    result = invoke(
        "compare",
        stack,
        "--sigma",
        "20",
        "--methods",
        "noisy,spacetime,frames,opencv-multi",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    records = {r["method"]: r for r in payload[0]["records"]}
    assert set(records) == {"noisy", "spacetime", "frames", "opencv-multi"}
    assert records["spacetime"]["flicker"] < records["noisy"]["flicker"]
    result = invoke("compare", stack, "--report", tmp_path / "r")
    assert result.exit_code == 2 and "not available for sequences" in result.stderr
    result = invoke("compare", "--noisy", clips["avi"], "--clean", clips["avi"], "-m", "noisy")
    assert result.exit_code == 0, result.stderr
    assert "flicker" in result.stdout


def test_cli_light_copy_of_video_suffixes():
    from nlmeans import video
    from nlmeans_cli import _video

    assert _video.VIDEO_SUFFIXES == video.VIDEO_SUFFIXES


def test_hyperstack_of_volumes_over_time(tmp_path):
    # An ImageJ TZYX hyperstack is volumes over time: 3-D patches, the
    # output a TZYX hyperstack with the voxel size, unit and frame interval.
    rng = np.random.default_rng(4)
    volumes = (rng.random((4, 5, 18, 20)) * 60000).astype(np.uint16)
    src = tmp_path / "cells.tif"
    metadata = {"axes": "TZYX", "spacing": 2.5, "unit": "um", "finterval": 30.0}
    tifffile.imwrite(src, volumes, imagej=True, metadata=metadata, resolution=(2.5, 2.5))
    source = open_sequence(src)
    assert source.depth == 5 and source.n_frames == 4 and not source.is_color
    assert "gray volumes" in source.describe()
    result = invoke("denoise", src, "--sigma", "0.05")
    assert result.exit_code == 0, result.stderr
    dst = tmp_path / "cells_denoised.tif"
    expected = nlmeans.denoise_sequence(volumes, sigma=0.05)
    with tifffile.TiffFile(dst) as tif:
        assert tif.series[0].axes == "TZYX"
        info = tif.imagej_metadata
        assert (info["spacing"], info["unit"], info["finterval"]) == (2.5, "um", 30.0)
        assert tif.pages[0].tags["XResolution"].value == (5, 2)
        np.testing.assert_array_equal(tif.asarray(), expected)
    patchwise = tmp_path / "patchwise.tif"
    result = invoke("denoise", src, "-o", patchwise, "--method", "patchwise", "--sigma", "0.05")
    assert result.exit_code == 0, result.stderr
    expected = nlmeans.denoise_sequence(volumes, sigma=0.05, method="patchwise")
    np.testing.assert_array_equal(tifffile.imread(patchwise), expected)
    # The network takes 2-D frames: one line, exit 1, nothing written.
    result = invoke("denoise", src, "-o", tmp_path / "p.tif", "--method", "neural")
    assert result.exit_code == 1 and "'fast', 'exact' or 'patchwise'" in result.stderr
    assert not (tmp_path / "p.tif").exists()
    # Channels in a hyperstack are refused with what to do.
    tzcyx = tmp_path / "tzcyx.tif"
    tifffile.imwrite(tzcyx, np.zeros((2, 3, 2, 8, 8), np.uint8), imagej=True)
    with pytest.raises(SequenceError, match="TZCYX hyperstack.*split the channels"):
        open_sequence(tzcyx)


@pytest.mark.parametrize("axes", ["ZYX", "TYX"])
def test_imagej_stack_keeps_its_axis_and_metadata(tmp_path, axes):
    """A Z-stack (or a time-lapse) of 2-D frames comes back as one, with its
    voxel size, unit and resolution; a plain stack keeps its resolution."""
    rng = np.random.default_rng(5)
    frames = (rng.random((6, 20, 22)) * 60000).astype(np.uint16)
    src = tmp_path / "stack.tif"
    metadata = {"axes": axes, "spacing": 0.5, "unit": "um"}
    tifffile.imwrite(src, frames, imagej=True, metadata=metadata, resolution=(4.0, 4.0))
    result = invoke("denoise", src, "--sigma", "0.05", *FAST)
    assert result.exit_code == 0, result.stderr
    with tifffile.TiffFile(tmp_path / "stack_denoised.tif") as tif:
        assert tif.series[0].axes == axes and tif.series[0].shape == frames.shape
        assert (tif.imagej_metadata["spacing"], tif.imagej_metadata["unit"]) == (0.5, "um")
        assert tif.pages[0].tags["XResolution"].value == (4, 1)
        expected = nlmeans.denoise_sequence(
            frames, sigma=0.05, patch_size=3, patch_distance=2, temporal_radius=1
        )
        np.testing.assert_array_equal(tif.asarray(), expected)
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, frames, resolution=(2.0, 2.0))
    assert invoke("denoise", plain, "--sigma", "0.05", *FAST).exit_code == 0
    with tifffile.TiffFile(tmp_path / "plain_denoised.tif") as tif:
        assert len(tif.pages) == 6 and tif.pages[5].tags["XResolution"].value == (2, 1)


def test_hyperstack_writer_discards_incomplete_output(tmp_path):
    volumes = np.zeros((3, 4, 8, 8), np.float32)
    src = tmp_path / "v.tif"
    tifffile.imwrite(src, volumes, imagej=True, metadata={"axes": "TZYX"})
    dst = tmp_path / "out.tif"
    with pytest.raises(SequenceError, match="2 of 3 frames"):
        with SequenceWriter(dst, like=open_sequence(src)) as writer:
            writer.write(volumes[0])
            writer.write(volumes[1])
    assert list(tmp_path.iterdir()) == [src]


def test_compare_on_volumes_over_time(tmp_path):
    image = np.random.default_rng(0).random((48, 48))
    clean = (make_volume_sequence(image, 4, depth=5, seed=0) * 255).round().astype(np.uint8)
    stack = tmp_path / "cells.tif"
    tifffile.imwrite(stack, clean, imagej=True, metadata={"axes": "TZYX"})
    result = invoke("compare", stack, "--sigma", "25", "--json")
    assert result.exit_code == 0, result.stderr
    records = {r["method"]: r for r in json.loads(result.stdout)[0]["records"]}
    assert set(records) == {"noisy", "spacetime", "frames"}  # the volume defaults
    assert records["spacetime"]["psnr"] > records["noisy"]["psnr"]
    methods = "noisy,spacetime-patchwise,frames-patchwise"
    result = invoke("compare", stack, "--sigma", "25", "--methods", methods, "--json")
    assert result.exit_code == 0, result.stderr
    records = {r["method"]: r for r in json.loads(result.stdout)[0]["records"]}
    assert records["spacetime-patchwise"]["psnr"] > records["noisy"]["psnr"] + 3
    result = invoke("compare", stack, "--sigma", "25", "--methods", "spacetime,opencv-multi")
    assert result.exit_code == 1
    assert "opencv-multi take 2-D frames" in result.stderr
    assert "Traceback" not in result.stderr
