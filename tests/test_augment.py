import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cifarlab import make_config
from cifarlab.augment import Augmenter, alternating_flips, crop_at, cutout_at, flip_where, rotate_by


def augmenter(names, **settings) -> Augmenter:
    """The augmentations `names` with the given settings and the defaults of the rest."""
    return Augmenter(make_config({"augment": list(names), **settings}))


def batch(n=6, seed=0):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_crop_at_the_padding_offset_is_the_identity():
    images = batch()
    offset = torch.full((len(images),), 4)
    assert torch.equal(crop_at(images, 4, 32, offset, offset), images)


@given(top=st.integers(0, 8), left=st.integers(0, 8))
@settings(max_examples=30, deadline=None)
def test_crop_at_shifts_the_image_and_fills_with_zeros(top, left):
    images = batch(1)
    cropped = crop_at(images, 4, 32, torch.tensor([top]), torch.tensor([left]))
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    assert torch.equal(cropped, padded[:, :, top:top + 32, left:left + 32])


@given(seed=st.integers(0, 2**31 - 1), padding=st.integers(0, 6), size=st.integers(8, 32))
@settings(max_examples=30, deadline=None)
def test_crop_with_flip_in_one_gather_is_the_crop_then_the_mirror(seed, padding, size):
    images = batch(8, seed % 1000)
    g = torch.Generator().manual_seed(seed)
    span = 32 + 2 * padding - size + 1
    top, left = torch.randint(0, span, (8,), generator=g), torch.randint(0, span, (8,), generator=g)
    flip = torch.randint(0, 2, (8,), generator=g).bool()
    expected = flip_where(crop_at(images, padding, size, top, left), flip)
    assert torch.equal(crop_at(images, padding, size, top, left, flip), expected)


def test_flip_twice_is_the_identity_and_once_mirrors():
    images = batch()
    mask = torch.tensor([True, False, True, True, False, False])
    once = flip_where(images, mask)
    assert torch.equal(flip_where(once, mask), images)
    assert torch.equal(once[0], images[0].flip(-1))
    assert torch.equal(once[1], images[1])


@given(cy=st.integers(0, 31), cx=st.integers(0, 31), size=st.integers(1, 40))
@settings(max_examples=60, deadline=None)
def test_cutout_zeroes_exactly_the_square_inside_the_image(cy, cx, size):
    images = batch(1) + 0.01  # no pixel is zero before
    out = cutout_at(images, size, torch.tensor([cy]), torch.tensor([cx]))
    y0, x0 = cy - size // 2, cx - size // 2
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[max(y0, 0):max(y0 + size, 0), max(x0, 0):max(x0 + size, 0)] = True
    zeroed = (out[0] == 0).all(0)
    assert torch.equal(zeroed, expected)
    assert torch.equal(out[0][:, ~expected], images[0][:, ~expected])


@given(size=st.integers(1, 40), seed=st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_cutout_placed_inside_always_hides_a_whole_square(size, seed):
    images = batch(64, seed) + 0.01  # no pixel is zero before
    out = augmenter(("cutout",), cutout_size=size, cutout_placement="inside")(images, torch.Generator().manual_seed(seed))
    assert ((out == 0).all(1).sum((1, 2)) == min(size, 32) ** 2).all()


def test_cutout_placed_inside_reaches_every_corner_it_fits():
    augment = augmenter(("cutout",), cutout_size=12, cutout_placement="inside")
    params = augment.draw(batch(2000), torch.Generator().manual_seed(0))
    for centers in (params["center_y"], params["center_x"]):
        assert set((centers - 6).tolist()) == set(range(32 - 12 + 1))


def test_rotation_by_zero_is_the_identity():
    images = batch()
    assert torch.allclose(rotate_by(images, torch.zeros(len(images))), images, atol=1e-5)


def test_rotation_by_90_degrees_turns_the_image():
    images = batch(2)
    turned = rotate_by(images, torch.full((2,), 90.0))
    # a quarter turn of a square image moves pixels exactly onto pixels
    assert torch.allclose(turned, torch.rot90(images, k=1, dims=(2, 3)), atol=1e-4) or \
        torch.allclose(turned, torch.rot90(images, k=-1, dims=(2, 3)), atol=1e-4)


def test_rotation_keeps_the_centre_and_blackens_corners():
    images = torch.ones(1, 3, 32, 32)
    turned = rotate_by(images, torch.tensor([45.0]))
    assert turned[0, :, 16, 16].min() > 0.99
    assert turned[0, :, 0, 0].max() < 0.01


@pytest.mark.parametrize("names", [("crop",), ("flip",), ("cutout",), ("rotate",), ("crop", "flip", "cutout", "rotate")])
def test_the_same_seed_gives_the_same_batch_and_another_seed_does_not(names):
    augment = augmenter(names, crop_padding=4)
    images = batch(16)
    first = augment(images, torch.Generator().manual_seed(3))
    again = augment(images, torch.Generator().manual_seed(3))
    other = augment(images, torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert first.shape == images.shape


def test_each_image_draws_its_own_parameters():
    # 64 copies of one image: a per-batch parameter would leave them all equal
    images = batch(1).repeat(64, 1, 1, 1)
    out = augmenter(("crop", "flip"), crop_padding=4).__call__(images, torch.Generator().manual_seed(0))
    distinct = {tuple(o.flatten()[:200].tolist()) for o in out}
    assert len(distinct) > 20


def test_no_augmentation_leaves_the_batch_alone():
    images = batch()
    assert torch.equal(augmenter(())(images, torch.Generator()), images)


def test_the_fused_crop_flip_rotate_equals_the_three_steps_one_after_another():
    images = batch(32)
    augment = augmenter(("crop", "flip", "rotate", "cutout"), crop_padding=4, rotate_degrees=5.0)
    params = augment.draw(images, torch.Generator().manual_seed(5))
    assert params["flip"].any() and (~params["flip"]).any() and (params["top"] != 4).any()
    fused = augment.apply(images, params)
    sequential = crop_at(images, 4, 32, params["top"], params["left"])
    sequential = rotate_by(flip_where(sequential, params["flip"]), params["degrees"])
    sequential = cutout_at(sequential, 16, params["center_y"], params["center_x"])
    # one resampling instead of two: equal but for the border pixels that the padding's zeros reach
    inner = (slice(None), slice(None), slice(6, 26), slice(6, 26))
    assert torch.allclose(fused[inner], sequential[inner], atol=1e-5)
    assert (fused - sequential).abs().mean() < 0.01


def test_the_cutout_folded_into_the_resampling_is_exactly_a_cutout_after_it():
    images = batch(16)
    augment = augmenter(("crop", "flip", "rotate", "cutout"), crop_padding=4, rotate_degrees=5.0)
    params = augment.draw(images, torch.Generator().manual_seed(3))
    without_cutout = {k: v for k, v in params.items() if k not in ("center_y", "center_x")}
    no_cutout = augmenter(("crop", "flip", "rotate"), crop_padding=4, rotate_degrees=5.0)
    expected = cutout_at(no_cutout.apply(images, without_cutout), 16, params["center_y"], params["center_x"])
    fused = augment.apply(images, params)
    assert (fused == 0).sum() >= 16 * 3 * 8 * 8  # every square keeps at least a quarter inside
    assert torch.allclose(fused, expected, atol=1e-6)


def test_a_rotation_by_zero_inside_the_fused_path_is_an_exact_crop_and_flip():
    images = batch(8)
    augment = augmenter(("crop", "flip", "rotate"), crop_padding=4)
    params = augment.draw(images, torch.Generator().manual_seed(1))
    params["degrees"] = torch.zeros(8)
    expected = flip_where(crop_at(images, 4, 32, params["top"], params["left"]), params["flip"])
    assert torch.allclose(augment.apply(images, params), expected, atol=1e-5)


def test_the_sampling_grid_is_torch_affine_grid():
    from cifarlab.augment import rotation_matrices

    images = batch(5)
    linear = rotation_matrices(torch.tensor([0.0, 3.0, -5.0, 90.0, 30.0]), torch.float32)
    shift = torch.rand(5, 2) - 0.5
    theta = torch.cat([linear, shift.unsqueeze(2)], 2)
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    expected = torch.nn.functional.grid_sample(images, grid, align_corners=False)
    from cifarlab.augment import resample

    assert torch.allclose(resample(images, linear, shift), expected, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 500), seed=st.integers(0, 2**31), epoch=st.integers(1, 50))
def test_alternating_flips_show_every_image_both_ways_in_any_two_epochs_running(n, seed, epoch):
    this, following = alternating_flips(n, seed, epoch), alternating_flips(n, seed, epoch + 1)
    assert this.dtype == torch.bool and this.shape == (n,)
    assert torch.equal(this, ~following)
    assert torch.equal(this, alternating_flips(n, seed, epoch + 2))


def test_alternating_flips_start_from_a_seeded_coin_per_image():
    first = alternating_flips(2000, seed=5, epoch=1)
    assert torch.equal(first, alternating_flips(2000, seed=5, epoch=1))
    assert not torch.equal(first, alternating_flips(2000, seed=6, epoch=1))
    assert 0.45 < first.float().mean() < 0.55


@pytest.mark.parametrize("names", [("flip",), ("crop", "flip")])
def test_a_given_flip_decides_the_mirroring_and_leaves_the_other_draws_alone(names):
    augment, images = augmenter(names, crop_padding=4), batch(8)
    everything, nothing = torch.ones(8, dtype=torch.bool), torch.zeros(8, dtype=torch.bool)
    mirrored = augment(images, torch.Generator().manual_seed(1), flip=everything)
    plain = augment(images, torch.Generator().manual_seed(1), flip=nothing)
    assert torch.equal(mirrored, plain.flip(3))
    assert not torch.allclose(mirrored, plain)


def test_the_augmentations_draw_in_the_registry_s_order_one_call_each():
    """The draws of crop, flip, rotate, cutout, in that order, from the one generator (what the default
    recipe's results rest on: a new augmentation that is not asked for draws nothing)."""
    images = batch(8)
    augment = augmenter(("cutout", "rotate", "flip", "crop"), crop_padding=1, rotate_degrees=5.0)
    params = augment.draw(images, torch.Generator().manual_seed(9))
    generator = torch.Generator().manual_seed(9)
    expected = {"top": torch.randint(0, 3, (8,), generator=generator),
                "left": torch.randint(0, 3, (8,), generator=generator),
                "flip": torch.randint(0, 2, (8,), generator=generator).bool(),
                "degrees": (torch.rand(8, generator=generator) * 2 - 1) * 5.0,
                "center_y": torch.randint(0, 32, (8,), generator=generator),
                "center_x": torch.randint(0, 32, (8,), generator=generator)}
    assert params.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(params[name], value), name


@pytest.mark.parametrize("names, settings, path", [
    (("crop", "flip"), {}, "crop and flip as one gather"),
    (("crop", "flip", "rotate", "cutout"), {}, "crop, flip, rotation and CutOut as one resampling"),
    (("flip", "rotate"), {}, "crop, flip, rotation and CutOut as one resampling"),
    (("crop", "flip", "rotate"), {"crop_pad_mode": "reflect"}, None),  # the resampling pads with zeros only
    (("crop", "flip", "rotate"), {"crop_size": 28}, None),  # nor changes the size
    (("jitter", "crop", "flip", "rotate"), {}, None),  # nor knows the jitter
    (("crop", "flip", "rotate"), {"rotate_degrees": 0.0}, "crop and flip as one gather"),  # no rotation is none
    (("crop",), {}, None),
])
def test_a_fast_path_is_taken_only_when_it_covers_every_active_augmentation(names, settings, path):
    augment = augmenter(names, **settings)
    taken = augment.fast_path(batch(2))
    assert (taken.name if taken else None) == path


@pytest.mark.parametrize("names", [("crop", "flip"), ("jitter", "crop", "flip", "cutout"), ("flip", "cutout")])
def test_the_fast_paths_and_the_steps_one_by_one_agree(names):
    images = batch(16)
    augment = augmenter(names, crop_padding=3)
    params = augment.draw(images, torch.Generator().manual_seed(2))
    one_by_one = images
    for step in augment.steps.values():
        one_by_one = step.apply(one_by_one, params)
    assert torch.equal(augment.apply(images, params), one_by_one)


def test_reflect_padding_mirrors_the_image_at_its_border():
    images = batch(4)
    top, left = torch.tensor([0, 0, 8, 3]), torch.tensor([0, 8, 0, 5])
    out = crop_at(images, 4, 32, top, left, pad_mode="reflect")
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4), mode="reflect")
    for i in range(4):
        assert torch.equal(out[i], padded[i, :, top[i]:top[i] + 32, left[i]:left[i] + 32])
    assert torch.equal(out[0, :, 0, 4:], images[0, :, 4, :28])  # row -4 is row 4, mirrored about row 0
    assert (out[0, :, :4, :] > 0).any()  # where zero padding would be black


@settings(max_examples=30, deadline=None)
@given(strength=st.floats(0, 1), seed=st.integers(0, 2**31))
def test_colour_jitter_stays_in_range_and_leaves_grey_images_grey(strength, seed):
    from cifarlab.augment import grey

    images = batch(6)
    augment = augmenter(("jitter",), jitter_strength=strength)
    out = augment(images, torch.Generator().manual_seed(seed))
    assert out.min() >= 0 and out.max() <= 1
    params = augment.draw(images, torch.Generator().manual_seed(seed))
    for name in ("brightness", "contrast", "saturation"):
        assert ((params[name] >= 1 - strength - 1e-6) & (params[name] <= 1 + strength + 1e-6)).all()
    grey_images = grey(images).expand(-1, 3, -1, -1).contiguous()
    jittered = augment(grey_images, torch.Generator().manual_seed(seed))
    assert torch.allclose(jittered, jittered[:, :1].expand_as(jittered), atol=1e-6)  # still grey


def test_colour_jitter_at_strength_zero_changes_nothing_and_brightness_scales():
    from cifarlab.augment import jitter_colours

    images = batch(4) * 0.5
    assert torch.allclose(augmenter(("jitter",), jitter_strength=0.0)(images, torch.Generator()), images)
    ones = torch.ones(4)
    assert torch.allclose(jitter_colours(images, ones * 1.5, ones, ones), images * 1.5, atol=1e-6)
