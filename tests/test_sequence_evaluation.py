"""Synthetic sequences (nlmeans.synthetic) and sequence metrics (nlmeans.sequence_evaluation)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import peak_signal_noise_ratio

from nlmeans import sequence_evaluation as sev
from nlmeans.synthetic import MOTIONS, make_sequence


def _image(seed=0, shape=(48, 56)):
    rng = np.random.default_rng(seed)
    # Smooth structure plus texture, so that shifts are visible.
    y, x = np.mgrid[: shape[0], : shape[1]]
    return np.clip(0.5 + 0.3 * np.sin(x / 3.0) * np.cos(y / 5.0) + 0.1 * rng.random(shape), 0, 1)


@pytest.mark.parametrize("motion", MOTIONS)
def test_make_sequence_is_deterministic_and_in_range(motion):
    image = _image()
    a = make_sequence(image, 5, seed=3, motion=motion)
    b = make_sequence(image, 5, seed=3, motion=motion)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5, 36, 42) and a.dtype == np.float64
    assert a.min() >= 0 and a.max() <= 1
    if motion != "static":
        assert not np.allclose(a[0], a[-1])
        assert not np.array_equal(a, make_sequence(image, 5, seed=4, motion=motion))


def test_static_is_the_centre_crop_repeated():
    image = _image()
    clip = make_sequence(image, 3, seed=0, motion="static", frame_shape=(20, 30))
    # Even margins (48 - 20, 56 - 30): the centre crop is sampled on the pixel grid.
    for frame in clip:
        np.testing.assert_allclose(frame, image[14:34, 13:43], atol=1e-12)


def test_objects_move_over_a_static_background():
    image = _image()
    other = np.full((40, 40), 0.0)  # a black object
    clip = make_sequence(image, 6, seed=1, motion="objects", objects=[other], n_objects=1)
    background = make_sequence(image, 1, seed=1, motion="static")[0]
    covered = [np.abs(f - background) > 1e-9 for f in clip]
    assert all(c.any() for c in covered[:2]) or all(c.any() for c in covered[-2:])
    # Where the object is not, the frame is the background.
    for frame, mask in zip(clip, covered):
        np.testing.assert_allclose(frame[~mask], background[~mask])
    # The object moves: the covered region changes.
    assert any(not np.array_equal(covered[i], covered[i + 1]) for i in range(5))


def test_colour_sequence_with_gray_objects():
    image = np.stack([_image(s) for s in range(3)], axis=-1)
    clip = make_sequence(image, 4, seed=2, motion="mixed", objects=[_image(7)])
    assert clip.shape == (4, 36, 42, 3)


def test_make_sequence_bad_input():
    with pytest.raises(ValueError, match="motion"):
        make_sequence(_image(), 3, seed=0, motion="shake")
    with pytest.raises(ValueError, match="n_frames"):
        make_sequence(_image(), 0, seed=0)
    with pytest.raises(ValueError, match="frame_shape"):
        make_sequence(_image(), 3, seed=0, frame_shape=(100, 10))


def _flicker_reference(clean, output):
    total, count = 0.0, 0
    for t in range(1, clean.shape[0]):
        for idx in np.ndindex(*clean.shape[1:]):
            e1 = min(max(output[t][idx], 0), 1) - clean[t][idx]
            e0 = min(max(output[t - 1][idx], 0), 1) - clean[t - 1][idx]
            total += abs(e1 - e0)
            count += 1
    return total / count


@settings(max_examples=20, deadline=None)
@given(t=st.integers(1, 4), seed=st.integers(0, 1000))
def test_flicker_matches_reference(t, seed):
    rng = np.random.default_rng(seed)
    clean = rng.random((t, 4, 3))
    output = clean + 0.3 * rng.standard_normal((t, 4, 3))
    expected = _flicker_reference(clean, output) if t > 1 else 0.0
    assert sev.flicker(clean, output) == pytest.approx(expected, abs=1e-12)


def test_flicker_of_a_constant_error_is_zero():
    rng = np.random.default_rng(0)
    clean = 0.2 + 0.5 * rng.random((5, 8, 8))
    error = 0.1 * rng.standard_normal((8, 8))
    assert sev.flicker(clean, clean + error) == pytest.approx(0.0, abs=1e-15)


def test_measure_sequence_averages_frames():
    rng = np.random.default_rng(1)
    clean = rng.random((3, 16, 16, 3))
    out = clean + 0.05 * rng.standard_normal(clean.shape)
    scores = sev.measure_sequence(clean, out, channel_axis=-1)
    expected = np.mean(
        [peak_signal_noise_ratio(c, np.clip(o, 0, 1), data_range=1) for c, o in zip(clean, out)]
    )
    assert scores["psnr"] == pytest.approx(expected)
    assert 0 < scores["ssim"] < 1 and scores["flicker"] > 0


def test_opencv_multi_matches_a_direct_call():
    import cv2

    rng = np.random.default_rng(2)
    noisy = rng.random((4, 20, 20))
    out = sev.opencv_multi(noisy, temporal_radius=1, h=20.0, patch_size=3, patch_distance=3)
    frames = [np.clip(np.rint(f * 255), 0, 255).astype(np.uint8) for f in noisy]
    direct = cv2.fastNlMeansDenoisingMulti(frames[1:4], 1, 3, None, 20.0, 3, 7)
    np.testing.assert_array_equal(np.rint(out[2] * 255).astype(np.uint8), direct)
    assert out.shape == noisy.shape


def test_compare_sequence_spacetime_beats_frames_and_flickers_less():
    rng = np.random.default_rng(3)
    clean = make_sequence(_image(5, (64, 64)), 6, seed=0, motion="pan", max_speed=1.0)
    noisy = clean + (25 / 255) * rng.standard_normal(clean.shape)
    records = sev.compare_sequence(
        clean, noisy, sigma=25 / 255, methods="noisy,spacetime,frames,opencv-multi"
    )
    by_name = {r.method: r for r in records}
    assert set(by_name) == {"noisy", "spacetime", "frames", "opencv-multi"}
    assert by_name["spacetime"].psnr > by_name["frames"].psnr > by_name["noisy"].psnr
    assert by_name["spacetime"].flicker < by_name["frames"].flicker < by_name["noisy"].flicker
    assert by_name["opencv-multi"].params["h_levels"] > 0


def test_parse_sequence_methods():
    assert sev.parse_sequence_methods("all") == list(sev.SEQUENCE_METHODS)
    assert sev.parse_sequence_methods("frames, spacetime,frames") == ["frames", "spacetime"]
    with pytest.raises(ValueError, match="unknown"):
        sev.parse_sequence_methods("spacetime,bm4d")


def test_integer_frames_are_read_on_the_unit_scale():
    from nlmeans import sequence_evaluation as se

    rng = np.random.default_rng(5)
    clean = rng.random((3, 16, 16))
    noisy = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1)
    as_u8 = [np.rint(x * 255).astype(np.uint8) for x in (clean, noisy)]
    floats = se.measure_sequence(as_u8[0] / 255.0, as_u8[1] / 255.0)
    integers = se.measure_sequence(*as_u8)  # read as 0-255 floats: -42 dB
    assert integers["psnr"] == pytest.approx(floats["psnr"])
    assert integers["flicker"] == pytest.approx(floats["flicker"])
